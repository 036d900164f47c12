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

	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/qubesdb/qubesdbfake"
)

// startFake runs a fake daemon on a fresh socket and returns it with a
// client connected to it; both are closed when the test ends.
func startFake(t *testing.T, initial map[string]string, timeout time.Duration) (*qubesdbfake.Server, *qubesdb.Client, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qubesdb.sock")
	srv, err := qubesdbfake.Start(sock, initial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Error(err)
		}
	})
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

func TestWriteThenRead(t *testing.T) {
	srv, c, _ := startFake(t, nil, 0)
	long := strings.Repeat("v", qubesdb.MaxData-1) // the daemon's largest value
	for _, w := range []struct{ path, value string }{
		{"/a", "1"}, {"/a", "2"}, {"/empty", ""}, {"/long", long},
	} {
		if err := c.Write(w.path, []byte(w.value)); err != nil {
			t.Fatalf("Write(%q, %d bytes): %v", w.path, len(w.value), err)
		}
		if got, err := c.Read(w.path); err != nil || string(got) != w.value {
			t.Fatalf("Read(%q) after Write = %d bytes, %v; want %d bytes", w.path, len(got), err, len(w.value))
		}
		if got, ok := srv.Get(w.path); !ok || got != w.value {
			t.Fatalf("fake holds %q = %d bytes, %v", w.path, len(got), ok)
		}
	}
	want := []qubesdbfake.Write{{Path: "/a", Value: "1"}, {Path: "/a", Value: "2"}, {Path: "/empty"}, {Path: "/long", Value: long}}
	if got := srv.Writes(); !slices.Equal(got, want) {
		t.Errorf("fake recorded %d writes, want %d: %+v", len(got), len(want), got)
	}

	srv.Fail("/refused")
	if err := c.Write("/refused", []byte("x")); !errors.Is(err, qubesdb.ErrRefused) || !strings.Contains(err.Error(), "/refused") {
		t.Errorf("Write to a failing path = %v, want ErrRefused naming the path", err)
	}
}

func TestRm(t *testing.T) {
	srv, c, _ := startFake(t, map[string]string{
		"/a/x": "1", "/a/y/z": "2", "/ab": "3", "/b": "4",
	}, 0)
	if err := c.Rm("/b"); err != nil {
		t.Fatalf("Rm(/b): %v", err)
	}
	if err := c.Rm("/b"); !errors.Is(err, qubesdb.ErrNotFound) {
		t.Fatalf("second Rm(/b) = %v, want ErrNotFound", err)
	}
	if err := c.Rm("/a/"); err != nil {
		t.Fatalf("Rm(/a/): %v", err)
	}
	if _, err := c.Read("/a/y/z"); !errors.Is(err, qubesdb.ErrNotFound) {
		t.Errorf("Read(/a/y/z) after Rm(/a/) = %v, want ErrNotFound", err)
	}
	// A directory remove is a string prefix ending in '/': "/ab" stays.
	if got, err := c.Read("/ab"); err != nil || string(got) != "3" {
		t.Errorf("Read(/ab) after Rm(/a/) = %q, %v; want 3", got, err)
	}
	want := []qubesdbfake.Write{{Path: "/b", Rm: true}, {Path: "/a/", Rm: true}}
	if got := srv.Writes(); !slices.Equal(got, want) {
		t.Errorf("fake recorded %+v, want %+v", got, want)
	}
}

func TestListAndMultiread(t *testing.T) {
	_, c, _ := startFake(t, map[string]string{
		"/mapped-ip/10.137.0.5/visible-ip":      "10.137.0.50",
		"/mapped-ip/10.137.0.5/visible-gateway": "10.137.0.1",
		"/mapped-ip/10.137.0.6/visible-ip":      "10.137.0.60",
		"/mapped-ipx":                           "no",
		"/name":                                 "sys-net",
	}, 0)

	tests := []struct {
		prefix string
		want   []qubesdb.Entry
	}{
		{"/mapped-ip/10.137.0.5/", []qubesdb.Entry{
			{Path: "/mapped-ip/10.137.0.5/visible-gateway", Value: []byte("10.137.0.1")},
			{Path: "/mapped-ip/10.137.0.5/visible-ip", Value: []byte("10.137.0.50")},
		}},
		// A prefix without '/' is a plain string prefix.
		{"/mapped-ip", []qubesdb.Entry{
			{Path: "/mapped-ip/10.137.0.5/visible-gateway", Value: []byte("10.137.0.1")},
			{Path: "/mapped-ip/10.137.0.5/visible-ip", Value: []byte("10.137.0.50")},
			{Path: "/mapped-ip/10.137.0.6/visible-ip", Value: []byte("10.137.0.60")},
			{Path: "/mapped-ipx", Value: []byte("no")},
		}},
		{"/nothing/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.prefix, func(t *testing.T) {
			got, err := c.Multiread(tt.prefix)
			if err != nil {
				t.Fatalf("Multiread(%q): %v", tt.prefix, err)
			}
			if !slices.EqualFunc(got, tt.want, func(a, b qubesdb.Entry) bool {
				return a.Path == b.Path && string(a.Value) == string(b.Value)
			}) {
				t.Errorf("Multiread(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
			paths, err := c.List(tt.prefix)
			if err != nil {
				t.Fatalf("List(%q): %v", tt.prefix, err)
			}
			var wantPaths []string
			for _, e := range tt.want {
				wantPaths = append(wantPaths, e.Path)
			}
			if !slices.Equal(paths, wantPaths) {
				t.Errorf("List(%q) = %q, want %q", tt.prefix, paths, wantPaths)
			}
		})
	}
}

func TestWatchEventsAreQueuedAndSkipped(t *testing.T) {
	srv, c, sock := startFake(t, map[string]string{"/r": "value"}, 0)
	for _, p := range []string{"/w/", "/own"} {
		if err := c.Watch(p); err != nil {
			t.Fatalf("Watch(%q): %v", p, err)
		}
	}

	// Set fires before it returns, so the event is on the wire ahead of the
	// next reply.
	srv.Set("/w/x", "1")
	if got, err := c.Read("/r"); err != nil || string(got) != "value" {
		t.Fatalf("Read(/r) behind a watch event = %q, %v", got, err)
	}
	if got := c.PendingWatches(); !slices.Equal(got, []string{"/w/x"}) {
		t.Fatalf("PendingWatches = %q, want [/w/x]", got)
	}
	if got := c.PendingWatches(); len(got) != 0 {
		t.Fatalf("PendingWatches after draining = %q, want none", got)
	}

	// Our own write: the daemon answers OK, then fires, then reads our next
	// request, so the event precedes the List reply.
	srv.Set("/w/y", "2")
	if err := c.Write("/own", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.List("/w/"); err != nil || !slices.Equal(got, []string{"/w/x", "/w/y"}) {
		t.Fatalf("List(/w/) behind watch events = %q, %v", got, err)
	}
	if got := c.PendingWatches(); !slices.Equal(got, []string{"/w/y", "/own"}) {
		t.Fatalf("PendingWatches = %q, want [/w/y /own]", got)
	}

	// A second client's write reaches us at a moment we cannot control:
	// poll until it has arrived, checking every reply on the way.
	other := dial(t, sock, 0)
	if err := other.Rm("/w/"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, err := c.Read("/r"); err != nil || string(got) != "value" {
			t.Fatalf("Read(/r) = %q, %v", got, err)
		}
		if got := c.PendingWatches(); len(got) > 0 {
			if !slices.Equal(got, []string{"/w/"}) {
				t.Fatalf("PendingWatches after Rm(/w/) = %q, want [/w/]", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no watch event for another client's Rm(/w/)")
		}
	}

	if err := c.Unwatch("/w/"); err != nil {
		t.Fatalf("Unwatch(/w/): %v", err)
	}
	if err := c.Unwatch("/w/"); !errors.Is(err, qubesdb.ErrNotFound) {
		t.Fatalf("second Unwatch(/w/) = %v, want ErrNotFound", err)
	}
	srv.Set("/w/z", "3")
	if _, err := c.Read("/r"); err != nil {
		t.Fatal(err)
	}
	if got := c.PendingWatches(); len(got) != 0 {
		t.Fatalf("PendingWatches after Unwatch = %q, want none", got)
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
	path64 := "/" + strings.Repeat("p", qubesdb.MaxPath-1)

	tests := []struct {
		name   string
		call   func() error
		naming string
	}{
		{"read 64-byte path", func() error { _, err := c.Read(path64); return err }, path64},
		{"write 64-byte path", func() error { return c.Write(path64, nil) }, path64},
		{"list 64-byte path", func() error { _, err := c.List(path64); return err }, path64},
		{"write 3073-byte value", func() error { return c.Write("/v", make([]byte, 3073)) }, "3073 bytes"},
		{"write 3072-byte value", func() error { return c.Write("/v", []byte(strings.Repeat("v", 3072))) }, "3072 bytes"},
		{"write NUL in value", func() error { return c.Write("/v", []byte("a\x00b")) }, "/v"},
		{"write directory path", func() error { return c.Write("/dir/", []byte("x")) }, "/dir/"},
		{"relative path", func() error { _, err := c.Read("relative"); return err }, "relative"},
		{"forbidden character", func() error { return c.Rm("/a b") }, "/a b"},
		{"empty prefix", func() error { _, err := c.Multiread(""); return err }, `""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if err == nil {
				t.Fatal("call succeeded, want a refusal")
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
	if err := c.Write("/v", []byte("ok")); err != nil {
		t.Fatalf("Write after refusals: %v", err)
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
	_, _, sock := startFake(t, nil, 0)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		c := dial(t, sock, 0)
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/client/%d", i)
			if err := c.Watch("/client/"); err != nil {
				errs <- err
				return
			}
			for n := range 20 {
				want := fmt.Sprint(n)
				if err := c.Write(path, []byte(want)); err != nil {
					errs <- err
					return
				}
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

func header(t testing.TB, typ qubesdb.MsgType, path string, dataLen uint32) []byte {
	b, err := qubesdb.MarshalHeader(qubesdb.Header{Type: typ, Path: path, DataLen: dataLen})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestHostileReplies(t *testing.T) {
	read := func(c *qubesdb.Client) error { _, err := c.Read("/p"); return err }
	list := func(c *qubesdb.Client) error { _, err := c.List("/p/"); return err }
	cat := func(parts ...[]byte) []byte { return slices.Concat(parts...) }

	tests := []struct {
		name  string
		reply []byte
		call  func(*qubesdb.Client) error
		want  error
	}{
		{"wrong type", header(t, qubesdb.RespList, "/p", 0), read, qubesdb.ErrProtocol},
		{"OK to a read", header(t, qubesdb.RespOK, "/p", 0), read, qubesdb.ErrProtocol},
		{"path mismatch", header(t, qubesdb.RespRead, "/q", 0), read, qubesdb.ErrProtocol},
		{"error for another path", header(t, qubesdb.RespErrorNoent, "/q", 0), read, qubesdb.ErrProtocol},
		{"oversize data_len", header(t, qubesdb.RespRead, "/p", qubesdb.MaxData), read, qubesdb.ErrProtocol},
		{"huge data_len", header(t, qubesdb.RespRead, "/p", 0xffffffff), read, qubesdb.ErrProtocol},
		{"watch with data", header(t, qubesdb.RespWatch, "/w", 1), read, qubesdb.ErrProtocol},
		{"short header", header(t, qubesdb.RespRead, "/p", 0)[:40], read, io.ErrUnexpectedEOF},
		{"short data", cat(header(t, qubesdb.RespRead, "/p", 5), []byte("ab")), read, io.ErrUnexpectedEOF},
		{"hang-up", nil, read, io.EOF},
		{"list entry outside prefix", header(t, qubesdb.RespList, "/q", 0), list, qubesdb.ErrProtocol},
		{"list terminator with data", header(t, qubesdb.RespList, "", 1), list, qubesdb.ErrProtocol},
		{"list without terminator", header(t, qubesdb.RespList, "/p/a", 0), list, io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := scriptedReply(t, tt.reply, tt.call)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !strings.Contains(err.Error(), "/p") || !strings.Contains(err.Error(), "pipe") {
				t.Errorf("error %q does not name the path and the socket", err)
			}
		})
	}
}

func FuzzClientReply(f *testing.F) {
	f.Add(byte(0), header(f, qubesdb.RespRead, "/p", 0))
	f.Add(byte(1), slices.Concat(header(f, qubesdb.RespWatch, "/w", 0), header(f, qubesdb.RespMultiread, "/p/a", 1), []byte("v"), header(f, qubesdb.RespMultiread, "", 0)))
	f.Add(byte(2), slices.Concat(header(f, qubesdb.RespList, "/p/a", 0), header(f, qubesdb.RespList, "", 0)))
	f.Add(byte(3), header(f, qubesdb.RespOK, "/p", 0))
	f.Add(byte(4), header(f, qubesdb.RespErrorNoent, "/p/", 0))
	f.Fuzz(func(t *testing.T, op byte, reply []byte) {
		calls := []func(*qubesdb.Client) error{
			func(c *qubesdb.Client) error {
				v, err := c.Read("/p")
				if err == nil && len(v) >= qubesdb.MaxData {
					t.Fatalf("Read returned %d bytes", len(v))
				}
				return err
			},
			func(c *qubesdb.Client) error { _, err := c.Multiread("/p/"); return err },
			func(c *qubesdb.Client) error { _, err := c.List("/p/"); return err },
			func(c *qubesdb.Client) error { return c.Write("/p", []byte("v")) },
			func(c *qubesdb.Client) error { return c.Rm("/p/") },
			func(c *qubesdb.Client) error { return c.Watch("/p/") },
			func(c *qubesdb.Client) error { return c.Unwatch("/p/") },
		}
		call := calls[int(op)%len(calls)]
		scriptedReply(t, reply, func(c *qubesdb.Client) error {
			// A second call proves a failed first one leaves no stale state
			// behind that could panic or hang.
			if err := call(c); err != nil {
				return call(c)
			}
			c.PendingWatches()
			return nil
		})
	})
}
