package xenstore

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/qubes-netvm/qnet/internal/wire/xs"
)

// TestWire sends raw requests and checks the raw replies, for the corners
// the real clients and this project's client do not reach.
func TestWire(t *testing.T) {
	const watch xs.Type = 4
	tests := []struct {
		name      string
		typ       xs.Type
		tx        uint32
		payload   string
		wantType  xs.Type
		wantReply string
	}{
		{"get perms", xs.GetPerms, 0, "/a/b\x00", xs.GetPerms, "n0\x00"},
		{"get perms missing", xs.GetPerms, 0, "/a/x\x00", xs.Error, "ENOENT\x00"},
		{"unsupported watch", watch, 0, "/a\x00tok\x00", xs.Error, "ENOSYS\x00"},
		{"read without terminator", xs.Read, 0, "/a/b", xs.Error, "EINVAL\x00"},
		{"read with trailing bytes", xs.Read, 0, "/a/b\x00x", xs.Error, "EINVAL\x00"},
		{"read of a bad path", xs.Read, 0, "/a//b\x00", xs.Error, "EINVAL\x00"},
		{"read of an empty value", xs.Read, 0, "/a\x00", xs.Read, ""},
		{"relative read", xs.Read, 0, "rel\x00", xs.Read, "home"},
		{"directory of a leaf", xs.Directory, 0, "/a/b\x00", xs.Directory, ""},
		{"directory", xs.Directory, 0, "/\x00", xs.Directory, "a\x00local\x00"},
		{"rm of an absent child", xs.Rm, 0, "/a/x\x00", xs.Rm, "OK\x00"},
		{"rm under an absent parent", xs.Rm, 0, "/x/y\x00", xs.Error, "ENOENT\x00"},
		{"rm of the root", xs.Rm, 0, "/\x00", xs.Error, "EINVAL\x00"},
		{"read in an unknown transaction", xs.Read, 9, "/a/b\x00", xs.Error, "ENOENT\x00"},
		{"end of an unknown transaction", xs.TransactionEnd, 9, "T\x00", xs.Error, "ENOENT\x00"},
	}
	socket := filepath.Join(t.TempDir(), "xenstored.sock")
	s, err := Start(socket, map[string]string{"/a/b": "1", "rel": "home"}, WithHome("/local/domain/3"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	c, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := xs.Header{Type: tt.typ, ReqID: uint32(100 + i), TxID: tt.tx}
			if err := xs.WriteMsg(c, req, []byte(tt.payload)); err != nil {
				t.Fatal(err)
			}
			reply, body, err := xs.ReadMsg(c)
			if err != nil {
				t.Fatal(err)
			}
			if reply.Type != tt.wantType || string(body) != tt.wantReply {
				t.Errorf("reply type %d %q, want type %d %q", reply.Type, body, tt.wantType, tt.wantReply)
			}
			if reply.ReqID != req.ReqID || reply.TxID != req.TxID {
				t.Errorf("reply ids req %d tx %d, want the request's %d and %d", reply.ReqID, reply.TxID, req.ReqID, req.TxID)
			}
		})
	}
	if _, ok := s.Get("/local/domain/3/rel"); !ok {
		t.Error("WithHome: relative initial path not stored under /local/domain/3")
	}
	if w := s.Writes(); len(w) != 0 {
		t.Errorf("writes %+v after requests that change nothing", w)
	}
}

// TestTransactionIsolation checks that a transaction reads its own writes,
// that nobody else sees them before the commit, and that a transaction
// belongs to the connection that opened it.
func TestTransactionIsolation(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "xenstored.sock")
	s, err := Start(socket, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	dial := func() net.Conn {
		c, err := net.Dial("unix", socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	owner, other := dial(), dial()
	call := func(c net.Conn, typ xs.Type, tx uint32, payload string) (xs.Type, string) {
		t.Helper()
		if err := xs.WriteMsg(c, xs.Header{Type: typ, TxID: tx}, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		reply, body, err := xs.ReadMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		return reply.Type, string(body)
	}

	if typ, body := call(owner, xs.TransactionStart, 0, "\x00"); typ != xs.TransactionStart || body != "1\x00" {
		t.Fatalf("transaction start: type %d %q", typ, body)
	}
	call(owner, xs.Write, 1, "/k\x00v")
	if _, body := call(owner, xs.Read, 1, "/k\x00"); body != "v" {
		t.Errorf("transaction reads %q of its own write, want v", body)
	}
	if _, body := call(owner, xs.Read, 0, "/k\x00"); body != "ENOENT\x00" {
		t.Errorf("uncommitted write visible outside the transaction: %q", body)
	}
	if _, body := call(other, xs.Read, 1, "/k\x00"); body != "ENOENT\x00" {
		t.Errorf("another connection used the transaction: %q", body)
	}
	if _, body := call(owner, xs.TransactionEnd, 1, "T\x00"); body != "OK\x00" {
		t.Fatalf("commit: %q", body)
	}
	if got, _ := s.Get("/k"); got != "v" {
		t.Errorf("after commit /k = %q, want v", got)
	}
}
