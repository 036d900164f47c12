package qubesdb_test

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/internal/wire/qdb"
)

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

func (r *raw) send(typ qdb.MsgType, path string, data []byte) {
	r.t.Helper()
	b, err := qdb.Marshal(qdb.Header{Type: typ, Path: path, DataLen: uint32(len(data))})
	if err != nil {
		r.t.Fatal(err)
	}
	if _, err := r.nc.Write(append(b, data...)); err != nil {
		r.t.Fatalf("send %s %q: %v", typ, path, err)
	}
}

// recv reads one message: its header and data.
func (r *raw) recv() (qdb.Header, string, error) {
	var buf [qdb.HeaderSize]byte
	if _, err := io.ReadFull(r.nc, buf[:]); err != nil {
		return qdb.Header{}, "", err
	}
	h, err := qdb.Unmarshal(buf[:])
	if err != nil {
		return h, "", err
	}
	data := make([]byte, h.DataLen)
	_, err = io.ReadFull(r.nc, data)
	return h, string(data), err
}

func (r *raw) mustRecv() (qdb.Header, string) {
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
	r.send(qdb.CmdRead, "/x", nil)
	if h, data := r.mustRecv(); h.Type != qdb.RespRead || h.Path != "/x" || data != "1" {
		r.t.Fatalf("READ /x after a refusal = %+v %q", h, data)
	}
}

func TestInvalidRequestsAnswerError(t *testing.T) {
	_, sock := testsupport.QubesDB(t, map[string]string{"/x": "1"})
	tests := []struct {
		name string
		typ  qdb.MsgType
		path string
		data []byte
	}{
		{"forbidden character", qdb.CmdRead, "/a b", nil},
		{"leading dash", qdb.CmdRead, "-a", nil},
		{"unknown type", 42, "/x", []byte("junk")},
		{"response type as command", qdb.RespOK, "/x", nil},
		{"data_len at MaxData", qdb.CmdWrite, "/x", make([]byte, qdb.MaxData)},
		{"write, which nothing here sends", qdb.CmdWrite, "/x", []byte("v")},
		{"multiread, which nothing here sends", qdb.CmdMultiread, "/", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, sock)
			r.send(tt.typ, tt.path, tt.data)
			if h, _ := r.mustRecv(); h.Type != qdb.RespError || h.Path != tt.path || h.DataLen != 0 {
				t.Fatalf("reply %+v, want RESP_ERROR for %q", h, tt.path)
			}
			r.readsStillWork()
		})
	}
}

func TestReadAnswers(t *testing.T) {
	srv, sock := testsupport.QubesDB(t, map[string]string{"/x": "1", "/empty": ""})
	srv.Fail("/broken")
	r := dialRaw(t, sock)
	for _, tt := range []struct {
		path string
		want qdb.Header
		data string
	}{
		{"/x", qdb.Header{Type: qdb.RespRead, Path: "/x", DataLen: 1}, "1"},
		{"/empty", qdb.Header{Type: qdb.RespRead, Path: "/empty"}, ""},
		{"/absent", qdb.Header{Type: qdb.RespErrorNoent, Path: "/absent"}, ""},
		{"/broken", qdb.Header{Type: qdb.RespError, Path: "/broken"}, ""},
	} {
		r.send(qdb.CmdRead, tt.path, nil)
		if h, data := r.mustRecv(); h != tt.want || data != tt.data {
			t.Errorf("READ %s = %+v %q, want %+v %q", tt.path, h, data, tt.want, tt.data)
		}
	}
	srv.Delete("/x")
	r.send(qdb.CmdRead, "/x", nil)
	if h, _ := r.mustRecv(); h.Type != qdb.RespErrorNoent {
		t.Errorf("READ /x after Delete = %+v, want RESP_ERROR_NOENT", h)
	}
}

func TestReadWithDataDisconnects(t *testing.T) {
	_, sock := testsupport.QubesDB(t, map[string]string{"/x": "1"})
	r := dialRaw(t, sock)
	r.send(qdb.CmdRead, "/x", []byte("d"))
	// Closing with unread request data makes the kernel send a reset.
	if h, _, err := r.recv(); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("after a READ with data: got %+v, %v; want the connection closed", h, err)
	}
}

func TestStallReleasedByClose(t *testing.T) {
	srv, sock := testsupport.QubesDB(t, map[string]string{"/slow": "x"})
	srv.Stall("/slow")
	r := dialRaw(t, sock)
	r.send(qdb.CmdRead, "/slow", nil)
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
	_, sock := testsupport.QubesDB(t, nil)
	if srv, err := fakeqdb.Start(sock, nil); err == nil {
		srv.Close()
		t.Fatal("second Start on the same socket succeeded")
	} else if !strings.Contains(err.Error(), sock) {
		t.Errorf("error %q does not name %s", err, sock)
	}
}
