package qubesdbfake_test

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/qubesdb/qubesdbfake"
)

func start(t *testing.T, initial map[string]string) (*qubesdbfake.Server, string) {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "qubesdb.sock")
	srv, err := qubesdbfake.Start(sock, initial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, sock
}

// raw is a client that speaks the wire protocol byte by byte, so the tests
// can send what the real client never would.
type raw struct {
	t  *testing.T
	nc net.Conn
}

func dialRaw(t *testing.T, sock string) *raw {
	t.Helper()
	nc, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	// Bounds every read so a fake that stays silent fails the test, not hangs it.
	if err := nc.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return &raw{t: t, nc: nc}
}

func (r *raw) send(typ qubesdb.MsgType, path string, data []byte) {
	r.t.Helper()
	b, err := qubesdb.MarshalHeader(qubesdb.Header{Type: typ, Path: path, DataLen: uint32(len(data))})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.nc.Write(append(b, data...)); err != nil {
		r.t.Fatalf("send %s %q: %v", typ, path, err)
	}
}

// recv reads one message: its header and data.
func (r *raw) recv() (qubesdb.Header, string, error) {
	var buf [qubesdb.HeaderSize]byte
	if _, err := io.ReadFull(r.nc, buf[:]); err != nil {
		return qubesdb.Header{}, "", err
	}
	h, err := qubesdb.UnmarshalHeader(buf[:])
	if err != nil {
		return h, "", err
	}
	data := make([]byte, h.DataLen)
	_, err = io.ReadFull(r.nc, data)
	return h, string(data), err
}

func (r *raw) mustRecv() (qubesdb.Header, string) {
	r.t.Helper()
	h, data, err := r.recv()
	if err != nil {
		r.t.Fatalf("recv: %v", err)
	}
	return h, data
}

// readsStillWork proves the connection is still in step after a refusal.
func (r *raw) readsStillWork() {
	r.t.Helper()
	r.send(qubesdb.CmdRead, "/x", nil)
	if h, data := r.mustRecv(); h.Type != qubesdb.RespRead || h.Path != "/x" || data != "1" {
		r.t.Fatalf("READ /x after a refusal = %+v %q", h, data)
	}
}

func TestInvalidRequestsAnswerError(t *testing.T) {
	_, sock := start(t, map[string]string{"/x": "1"})
	tests := []struct {
		name string
		typ  qubesdb.MsgType
		path string
		data []byte
	}{
		{"forbidden character", qubesdb.CmdRead, "/a b", nil},
		{"leading dash", qubesdb.CmdRead, "-a", nil},
		{"unknown type", 42, "/x", []byte("junk")},
		{"response type as command", qubesdb.RespOK, "/x", nil},
		{"data_len at MaxData", qubesdb.CmdWrite, "/x", make([]byte, qubesdb.MaxData)},
		{"list with data", qubesdb.CmdList, "/", []byte("d")},
		{"multiread with data", qubesdb.CmdMultiread, "/", []byte("d")},
		{"rm with data", qubesdb.CmdRm, "/x", []byte("d")},
		{"NUL in written value", qubesdb.CmdWrite, "/x", []byte("a\x00b")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, sock)
			r.send(tt.typ, tt.path, tt.data)
			if h, _ := r.mustRecv(); h.Type != qubesdb.RespError || h.Path != tt.path || h.DataLen != 0 {
				t.Fatalf("reply %+v, want RESP_ERROR for %q", h, tt.path)
			}
			r.readsStillWork()
		})
	}
}

func TestDisconnects(t *testing.T) {
	_, sock := start(t, map[string]string{"/x": "1"})
	tests := []struct {
		name      string
		typ       qubesdb.MsgType
		path      string
		data      []byte
		wantError bool // RESP_ERROR before the hang-up
	}{
		{"read with data", qubesdb.CmdRead, "/x", []byte("d"), false},
		{"write to a directory path", qubesdb.CmdWrite, "/dir/", []byte("v"), true},
		{"write to a relative path", qubesdb.CmdWrite, "rel", []byte("v"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, sock)
			r.send(tt.typ, tt.path, tt.data)
			if tt.wantError {
				if h, _ := r.mustRecv(); h.Type != qubesdb.RespError {
					t.Fatalf("reply %+v, want RESP_ERROR", h)
				}
			}
			// Closing with unread request data makes the kernel send a reset.
			if h, _, err := r.recv(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("after %s: got %+v, %v; want the connection closed", tt.name, h, err)
			}
		})
	}
}

// dump collects the paths of a LIST or MULTIREAD reply up to its terminator.
func dump(t *testing.T, r *raw, cmd, resp qubesdb.MsgType, prefix string) []string {
	t.Helper()
	r.send(cmd, prefix, nil)
	var paths []string
	for {
		h, data := r.mustRecv()
		if h.Type != resp {
			t.Fatalf("%s %q: reply %+v", cmd, prefix, h)
		}
		if h.Path == "" {
			if h.DataLen != 0 {
				t.Fatalf("%s %q: terminator carries %d bytes", cmd, prefix, h.DataLen)
			}
			return paths
		}
		if cmd == qubesdb.CmdList && data != "" {
			t.Fatalf("LIST %q: entry %q carries data %q", prefix, h.Path, data)
		}
		paths = append(paths, h.Path)
	}
}

func TestDumpOrder(t *testing.T) {
	_, sock := start(t, map[string]string{"/b": "2", "/a": "1", "/c/d": "3"})
	r := dialRaw(t, sock)
	sorted := []string{"/a", "/b", "/c/d"}
	if got := dump(t, r, qubesdb.CmdList, qubesdb.RespList, ""); !slices.Equal(got, sorted) {
		t.Errorf("LIST \"\" = %q, want %q", got, sorted)
	}
	if got := dump(t, r, qubesdb.CmdMultiread, qubesdb.RespMultiread, "/"); !slices.Equal(got, sorted) {
		t.Errorf("MULTIREAD / = %q, want %q", got, sorted)
	}
	// The daemon dumps the whole database backwards, for its peer's
	// insertion sort.
	reversed := []string{"/c/d", "/b", "/a"}
	if got := dump(t, r, qubesdb.CmdMultiread, qubesdb.RespMultiread, ""); !slices.Equal(got, reversed) {
		t.Errorf("MULTIREAD \"\" = %q, want %q", got, reversed)
	}
}

func TestWatchMatching(t *testing.T) {
	srv, sock := start(t, map[string]string{"/end": "e"})
	r := dialRaw(t, sock)
	for _, w := range []string{"/a/", "/b", "/b"} {
		r.send(qubesdb.CmdWatch, w, nil)
		if h, _ := r.mustRecv(); h.Type != qubesdb.RespOK || h.Path != w {
			t.Fatalf("WATCH %q: reply %+v", w, h)
		}
	}
	for _, p := range []string{"/a/x", "/ab", "/b", "/b/c", "/a"} {
		srv.Set(p, "v")
	}
	srv.Delete("/a/x")
	srv.Delete("/never-there")

	// Events come before the reply to the next request.
	r.send(qubesdb.CmdRead, "/end", nil)
	var events []string
	for {
		h, _ := r.mustRecv()
		if h.Type != qubesdb.RespWatch {
			if h.Type != qubesdb.RespRead {
				t.Fatalf("reply %+v, want RESP_READ", h)
			}
			break
		}
		events = append(events, h.Path)
	}
	// "/b" is watched twice, so it fires twice.
	want := []string{"/a/x", "/b", "/b", "/a/x"}
	if !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
}

func TestStallReleasedByClose(t *testing.T) {
	srv, sock := start(t, map[string]string{"/slow": "x"})
	srv.Stall("/slow")
	r := dialRaw(t, sock)
	r.send(qubesdb.CmdRead, "/slow", nil)
	deadline := time.Now().Add(5 * time.Second)
	for len(srv.Requests()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the fake never received READ /slow")
		}
		time.Sleep(time.Millisecond)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if h, _, err := r.recv(); err == nil {
		t.Fatalf("a stalled request got %+v", h)
	}
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket %s still there after Close: %v", sock, err)
	}
	if got := srv.Requests(); len(got) != 1 || got[0].Path != "/slow" {
		t.Errorf("Requests() = %+v, want the one READ /slow", got)
	}
}

func TestStartOnTakenSocket(t *testing.T) {
	_, sock := start(t, nil)
	if srv, err := qubesdbfake.Start(sock, nil); err == nil {
		srv.Close()
		t.Fatal("second Start on the same socket succeeded")
	} else if !strings.Contains(err.Error(), sock) {
		t.Errorf("error %q does not name %s", err, sock)
	}
}
