package qubesdb_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/internal/wire/qdb"
	"github.com/qubes-netvm/qnet/pkg/qubesdb"
)

// startFake runs a fake daemon on a fresh socket and returns it with a
// client connected to it; both are closed when the test ends.
func startFake(t *testing.T, initial map[string]string, timeout time.Duration) (*fakeqdb.Server, *qubesdb.Client, string) {
	t.Helper()
	srv, sock := testsupport.QubesDB(t, initial)
	return srv, dial(t, sock, timeout), sock
}

func dial(t *testing.T, sock string, timeout time.Duration) *qubesdb.Client {
	t.Helper()
	c, err := qubesdb.Dial(sock, timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestRead(t *testing.T) {
	srv, c, sock := startFake(t, map[string]string{
		"/qubes-netvm-gateway": "10.137.0.1",
		"/empty":               "",
		"/broken":              "x",
	}, 0)
	srv.Fail("/broken")

	tests := []struct {
		path      string
		want      string
		wantErr   error
		errNaming []string
	}{
		{path: "/qubes-netvm-gateway", want: "10.137.0.1"},
		{path: "/empty", want: ""},
		{path: "/absent", wantErr: qubesdb.ErrNotFound, errNaming: []string{"/absent"}},
		{path: "/broken", wantErr: qubesdb.ErrRefused, errNaming: []string{"/broken", sock}},
		// An entry is never a directory: "/qubes-netvm-gateway/" is absent.
		{path: "/qubes-netvm-gateway/", wantErr: qubesdb.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := c.Read(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Read(%q) = %q, %v; want %v", tt.path, got, err, tt.wantErr)
				}
				for _, s := range tt.errNaming {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("Read(%q) error %q does not name %q", tt.path, err, s)
					}
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read(%q) = %q, %v; want %q", tt.path, got, err, tt.want)
			}
		})
	}
	// Error replies leave the connection in step: a later read still works.
	if got, err := c.Read("/qubes-netvm-gateway"); err != nil || string(got) != "10.137.0.1" {
		t.Fatalf("Read after error replies = %q, %v", got, err)
	}
}

func TestStalledDaemonTimesOut(t *testing.T) {
	srv, c, sock := startFake(t, map[string]string{"/slow": "x"}, 200*time.Millisecond)
	srv.Stall("/slow")

	_, err := c.Read("/slow")
	if err == nil {
		t.Fatal("Read of a stalled path succeeded")
	}
	for _, s := range []string{"read", "/slow", sock, "timeout", "200ms"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %q", err, s)
		}
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("error %q does not wrap os.ErrDeadlineExceeded", err)
	}
	// A late reply could be mistaken for the next one: the client refuses
	// further use instead.
	if _, err := c.Read("/other"); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Errorf("Read after a timeout = %v, want an unusable-connection error", err)
	}
}

func TestRefusedBeforeSending(t *testing.T) {
	srv, c, _ := startFake(t, nil, 0)
	path64 := "/" + strings.Repeat("p", qdb.MaxPath-1)

	tests := []struct {
		name   string
		call   func() error
		naming string
	}{
		{"read 64-byte path", func() error { _, err := c.Read(path64); return err }, path64},
		{"relative path", func() error { _, err := c.Read("relative"); return err }, "relative"},
		{"forbidden character", func() error { _, err := c.Read("/a b"); return err }, "/a b"},
		{"empty path", func() error { _, err := c.Read(""); return err }, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, qdb.ErrInvalidPath) {
				t.Fatalf("error %v, want a refusal wrapping ErrInvalidPath", err)
			}
			if !strings.Contains(err.Error(), tt.naming) {
				t.Errorf("error %q does not name %q", err, tt.naming)
			}
		})
	}
	if got := srv.Requests(); len(got) != 0 {
		t.Errorf("refused calls still sent %d requests: %+v", len(got), got)
	}
	// Refusals send nothing, so the connection is still in step.
	srv.Set("/v", "ok")
	if got, err := c.Read("/v"); err != nil || string(got) != "ok" {
		t.Fatalf("Read after refusals = %q, %v", got, err)
	}
}

func TestDialAbsentSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "absent.sock")
	c, err := qubesdb.Dial(sock, time.Second)
	if err == nil {
		c.Close()
		t.Fatal("Dial of an absent socket succeeded")
	}
	if !strings.Contains(err.Error(), sock) {
		t.Errorf("Dial error %q does not name %s", err, sock)
	}
}

func TestSocketPath(t *testing.T) {
	t.Setenv("QUBESDB_SOCKET", "")
	if got := qubesdb.SocketPath(); got != qubesdb.DefaultSocket {
		t.Errorf("SocketPath() without override = %q, want %q", got, qubesdb.DefaultSocket)
	}
	t.Setenv("QUBESDB_SOCKET", "/tmp/x.sock")
	if got := qubesdb.SocketPath(); got != "/tmp/x.sock" {
		t.Errorf("SocketPath() with override = %q, want /tmp/x.sock", got)
	}
}

func TestConcurrentClients(t *testing.T) {
	entries := map[string]string{}
	for i := range 8 {
		entries[fmt.Sprintf("/client/%d", i)] = fmt.Sprint(i)
	}
	_, shared, sock := startFake(t, entries, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		// Half the goroutines share one client, half have their own.
		c := shared
		if i%2 == 1 {
			c = dial(t, sock, 0)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			path, want := fmt.Sprintf("/client/%d", i%8), fmt.Sprint(i%8)
			for range 20 {
				if got, err := c.Read(path); err != nil || string(got) != want {
					errs <- fmt.Errorf("Read(%s) = %q, %v; want %q", path, got, err, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// scriptedReply runs one client call against a daemon that answers with
// reply (whatever the request) and then hangs up.
func scriptedReply(t testing.TB, reply []byte, call func(*qubesdb.Client) error) error {
	clientEnd, daemonEnd := net.Pipe()
	c := qubesdb.NewClientOnConn(clientEnd, "pipe", 2*time.Second)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		io.Copy(io.Discard, daemonEnd) // swallow requests
	}()
	go func() {
		defer wg.Done()
		daemonEnd.Write(reply)
		daemonEnd.Close()
	}()
	err := call(c)
	c.Close()
	wg.Wait()
	return err
}

func header(t testing.TB, typ qdb.MsgType, path string, dataLen uint32) []byte {
	b, err := qdb.Marshal(qdb.Header{Type: typ, Path: path, DataLen: dataLen})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHostileReplies(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }
	tests := []struct {
		name  string
		reply []byte
		want  error
	}{
		{"wrong type", header(t, qdb.RespList, "/p", 0), qubesdb.ErrProtocol},
		{"OK to a read", header(t, qdb.RespOK, "/p", 0), qubesdb.ErrProtocol},
		{"path mismatch", header(t, qdb.RespRead, "/q", 0), qubesdb.ErrProtocol},
		{"error for another path", header(t, qdb.RespErrorNoent, "/q", 0), qubesdb.ErrProtocol},
		{"oversize data_len", header(t, qdb.RespRead, "/p", qdb.MaxData), qubesdb.ErrProtocol},
		{"huge data_len", header(t, qdb.RespRead, "/p", 0xffffffff), qubesdb.ErrProtocol},
		{"error reply with data", header(t, qdb.RespErrorNoent, "/p", 1), qubesdb.ErrProtocol},
		// This client sets no watches, so an event is a violation too.
		{"watch event", cat(header(t, qdb.RespWatch, "/p", 0), header(t, qdb.RespRead, "/p", 0)), qubesdb.ErrProtocol},
		{"short header", header(t, qdb.RespRead, "/p", 0)[:40], io.ErrUnexpectedEOF},
		{"short data", cat(header(t, qdb.RespRead, "/p", 5), []byte("ab")), io.ErrUnexpectedEOF},
		{"hang-up", nil, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := scriptedReply(t, tt.reply, func(c *qubesdb.Client) error { _, err := c.Read("/p"); return err })
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "/p") || !strings.Contains(err.Error(), "pipe") {
				t.Errorf("error %q does not name the path and the socket", err)
			}
		})
	}
}

// FuzzClientReply feeds an arbitrary byte stream as the daemon's answer to
// a read: the client must return, never panic, hang or return more than the
// daemon could send.
func FuzzClientReply(f *testing.F) {
	f.Add(header(f, qdb.RespRead, "/p", 0))
	f.Add(slices.Concat(header(f, qdb.RespRead, "/p", 1), []byte("v")))
	f.Add(header(f, qdb.RespErrorNoent, "/p", 0))
	f.Fuzz(func(t *testing.T, reply []byte) {
		scriptedReply(t, reply, func(c *qubesdb.Client) error {
			// A second read proves a failed first one leaves no stale state
			// behind that could panic or hang.
			for range 2 {
				v, err := c.Read("/p")
				if err == nil {
					if len(v) >= qdb.MaxData {
						t.Fatalf("Read returned %d bytes", len(v))
					}
					return nil
				}
			}
			return nil
		})
	})
}
