package xenstore_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/pkg/xenstore"
)

const vif = "/local/domain/0/backend/vif/5/0"

// startFake serves a fresh store and returns it with a client connected
// to it.
func startFake(t *testing.T, initial map[string]string, timeout time.Duration) (*fakexs.Server, *xenstore.Client, string) {
	t.Helper()
	s, socket := testsupport.XenStore(t, initial)
	c, err := xenstore.DialPath(socket, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return s, c, socket
}

func TestRoundTrip(t *testing.T) {
	s, c, _ := startFake(t, map[string]string{vif + "/mac": "00:16:3e:5e:6c:00"}, 0)

	if got, err := c.Read(vif + "/mac"); err != nil || string(got) != "00:16:3e:5e:6c:00" {
		t.Fatalf("Read mac = %q, %v", got, err)
	}
	if got, err := c.Read("backend/vif/5/0/mac"); err != nil || string(got) != "00:16:3e:5e:6c:00" {
		t.Fatalf("Read of a relative path = %q, %v", got, err)
	}
	value := []byte("with\x00nul and no terminator")
	if err := c.Write(vif+"/hotplug-status", value); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(vif + "/hotplug-status"); got != string(value) {
		t.Errorf("store holds %q, want %q", got, value)
	}
	s.Delete(vif + "/mac")

	_, err := c.Read(vif + "/mac")
	if !errors.Is(err, xenstore.ErrNotFound) || !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("Read of a removed node: %v, want ErrNotFound and ENOENT", err)
	}
	var xsErr *xenstore.Error
	if !errors.As(err, &xsErr) || xsErr.Op != "read" || xsErr.Path != vif+"/mac" || xsErr.Name != "ENOENT" {
		t.Errorf("error %#v, want *Error{read, path, ENOENT}", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "read") || !strings.Contains(msg, vif+"/mac") || !strings.Contains(msg, "ENOENT") {
		t.Errorf("message %q does not name op, path and error", msg)
	}
}

func TestFailMapsErrorNames(t *testing.T) {
	for name, errno := range map[string]syscall.Errno{
		"EINVAL": syscall.EINVAL, "EACCES": syscall.EACCES, "EEXIST": syscall.EEXIST, "EISDIR": syscall.EISDIR,
		"ENOMEM": syscall.ENOMEM, "ENOSPC": syscall.ENOSPC, "EIO": syscall.EIO, "ENOTEMPTY": syscall.ENOTEMPTY,
		"ENOSYS": syscall.ENOSYS, "EROFS": syscall.EROFS, "EBUSY": syscall.EBUSY, "EAGAIN": syscall.EAGAIN,
		"EISCONN": syscall.EISCONN, "E2BIG": syscall.E2BIG, "EPERM": syscall.EPERM,
	} {
		t.Run(name, func(t *testing.T) {
			s, c, _ := startFake(t, nil, 0)
			s.Fail(vif+"/ip", name)
			_, err := c.Read(vif + "/ip")
			var xsErr *xenstore.Error
			if !errors.As(err, &xsErr) || xsErr.Name != name || xsErr.Errno != errno || !errors.Is(err, errno) {
				t.Fatalf("error %#v, want *Error named %s matching %v", err, name, errno)
			}
			if !strings.Contains(err.Error(), vif+"/ip") || !strings.Contains(err.Error(), name) {
				t.Errorf("message %q does not name path and error", err)
			}
			if errors.Is(err, xenstore.ErrNotFound) {
				t.Errorf("%s matches ErrNotFound", name)
			}
		})
	}
	s, c, _ := startFake(t, nil, 0)
	s.Fail(vif+"/ip", "EACCES")
	if err := c.Write(vif+"/ip", []byte("x")); !errors.Is(err, syscall.EACCES) {
		t.Errorf("Write: %v, want EACCES", err)
	}
	s.Fail(vif+"/ip", "EWHATEVER")
	if _, err := c.Read(vif + "/ip"); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), "EWHATEVER") {
		t.Errorf("unknown error name: %v, want EIO naming EWHATEVER", err)
	}
}

func TestTransaction(t *testing.T) {
	errFn := errors.New("fn failed")
	tests := []struct {
		name        string
		commitFails int
		commitErr   string
		fnErr       error
		wantCalls   int
		wantErr     error // nil: committed
	}{
		{name: "commits both writes together", wantCalls: 1},
		{name: "retries after EAGAIN", commitFails: 1, commitErr: "EAGAIN", wantCalls: 2},
		{name: "gives up after repeated EAGAIN", commitFails: 100, commitErr: "EAGAIN", wantCalls: 8, wantErr: syscall.EAGAIN},
		{name: "does not retry other commit errors", commitFails: 1, commitErr: "EACCES", wantCalls: 1, wantErr: syscall.EACCES},
		{name: "aborts when fn fails", fnErr: errFn, wantCalls: 1, wantErr: errFn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, _ := startFake(t, nil, 0)
			s.FailCommits(tt.commitFails, tt.commitErr)
			calls := 0
			var lastTx *xenstore.Tx
			err := c.Transaction(func(tx *xenstore.Tx) error {
				calls++
				lastTx = tx
				if err := tx.Write(vif+"/hotplug-error", []byte("bad mac")); err != nil {
					return err
				}
				if _, err := c.Read(vif + "/hotplug-error"); !errors.Is(err, xenstore.ErrNotFound) {
					t.Errorf("uncommitted write visible outside: %v", err)
				}
				if err := tx.Write(vif+"/hotplug-status", []byte("error")); err != nil {
					return err
				}
				return tt.fnErr
			})
			if calls != tt.wantCalls {
				t.Errorf("fn ran %d times, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Transaction: %v, want %v", err, tt.wantErr)
				}
				if w := s.Writes(); len(w) != 0 {
					t.Errorf("writes %+v after a failed transaction", w)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			w := s.Writes()
			if len(w) != 2 || w[0].Tx == 0 || w[0].Tx != w[1].Tx ||
				w[0].Path != vif+"/hotplug-error" || w[1].Path != vif+"/hotplug-status" {
				t.Errorf("writes %+v, want hotplug-error and hotplug-status in one commit", w)
			}
			if err := lastTx.Write(vif+"/late", nil); err == nil || !strings.Contains(err.Error(), vif+"/late") {
				t.Errorf("write through an ended transaction: %v, want an error naming the path", err)
			}
		})
	}
}

func TestStalledRequestTimesOut(t *testing.T) {
	s, c, _ := startFake(t, map[string]string{vif + "/mac": "m"}, 100*time.Millisecond)
	s.Stall(vif + "/mac")
	_, err := c.Read(vif + "/mac")
	if err == nil || !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), vif+"/mac") {
		t.Fatalf("Read of a stalled node: %v, want a timeout naming the path", err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%v does not match os.ErrDeadlineExceeded", err)
	}
	// The late reply could arrive any time: the client must not use the
	// connection again.
	if _, err := c.Read(vif + "/other"); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("request after a timeout: %v, want refusal", err)
	}
}

func TestRefusedBeforeSending(t *testing.T) {
	path := vif + "/hotplug-error"
	fits := make([]byte, 4096-len(path)-1)
	tests := []struct {
		name    string
		call    func(c *xenstore.Client) error
		wantErr error // nil: accepted
		inMsg   string
	}{
		{"largest value", func(c *xenstore.Client) error { return c.Write(path, fits) }, nil, ""},
		{"value one byte too large", func(c *xenstore.Client) error { return c.Write(path, append(fits, 'x')) }, syscall.E2BIG, path},
		{"path with NUL", func(c *xenstore.Client) error { _, err := c.Read("/a\x00b"); return err }, syscall.EINVAL, `"/a\x00b"`},
		{"empty path", func(c *xenstore.Client) error { _, err := c.Read(""); return err }, syscall.EINVAL, "empty path"},
		{"path too long", func(c *xenstore.Client) error {
			_, err := c.Read("/" + strings.Repeat("a", 4095))
			return err
		}, syscall.E2BIG, "/aaaa"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, c, _ := startFake(t, nil, 0)
			err := tt.call(c)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Fatalf("error %v, want %v naming %s", err, tt.wantErr, tt.inMsg)
			}
			if w := s.Writes(); len(w) != 0 {
				t.Errorf("refused request reached the store: %+v", w)
			}
			// Had the request gone out, the daemon would have dropped the
			// connection or the client would have broken it.
			if err := c.Write(vif+"/after", []byte("ok")); err != nil {
				t.Errorf("client unusable after a refusal: %v", err)
			}
		})
	}
}

func TestDialHonoursXenstoredPath(t *testing.T) {
	_, _, socket := startFake(t, map[string]string{vif + "/mac": "m"}, 0)
	t.Setenv("XENSTORED_PATH", socket)
	c, err := xenstore.Dial(time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := c.Read(vif + "/mac"); err != nil || string(got) != "m" {
		t.Errorf("Read through XENSTORED_PATH = %q, %v", got, err)
	}

	missing := filepath.Join(t.TempDir(), "no-such.sock")
	t.Setenv("XENSTORED_PATH", missing)
	if _, err := xenstore.Dial(time.Second); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("Dial of a missing XENSTORED_PATH: %v, want an error naming it", err)
	}
}

func TestConcurrentClients(t *testing.T) {
	s, c, socket := startFake(t, nil, 0)
	other, err := xenstore.DialPath(socket, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	done := make(chan error)
	for i, client := range []*xenstore.Client{c, c, other, other} {
		go func() {
			var err error
			for j := range 50 {
				key := vif + "/k" + string(rune('a'+i))
				if err = client.Write(key, []byte{byte(j)}); err != nil {
					break
				}
				if _, err = client.Read(key); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	if n := len(s.Writes()); n != 200 {
		t.Errorf("%d writes recorded, want 200", n)
	}
}
