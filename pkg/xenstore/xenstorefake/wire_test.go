package xenstorefake

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/qubes-netvm/qnet/pkg/xenstore/internal/xswire"
)

// TestWire sends raw requests and checks the raw replies, for the corners
// the real clients and this project's client do not reach.
func TestWire(t *testing.T) {
	const watch xswire.Type = 4
	tests := []struct {
		name      string
		typ       xswire.Type
		tx        uint32
		payload   string
		wantType  xswire.Type
		wantReply string
	}{
		{"get perms", xswire.GetPerms, 0, "/a/b\x00", xswire.GetPerms, "n0\x00"},
		{"get perms missing", xswire.GetPerms, 0, "/a/x\x00", xswire.Error, "ENOENT\x00"},
		{"unsupported watch", watch, 0, "/a\x00tok\x00", xswire.Error, "ENOSYS\x00"},
		{"read without terminator", xswire.Read, 0, "/a/b", xswire.Error, "EINVAL\x00"},
		{"read with trailing bytes", xswire.Read, 0, "/a/b\x00x", xswire.Error, "EINVAL\x00"},
		{"read of a bad path", xswire.Read, 0, "/a//b\x00", xswire.Error, "EINVAL\x00"},
		{"read of an empty value", xswire.Read, 0, "/a\x00", xswire.Read, ""},
		{"relative read", xswire.Read, 0, "rel\x00", xswire.Read, "home"},
		{"directory of a leaf", xswire.Directory, 0, "/a/b\x00", xswire.Directory, ""},
		{"directory", xswire.Directory, 0, "/\x00", xswire.Directory, "a\x00local\x00"},
		{"rm of an absent child", xswire.Rm, 0, "/a/x\x00", xswire.Rm, "OK\x00"},
		{"rm under an absent parent", xswire.Rm, 0, "/x/y\x00", xswire.Error, "ENOENT\x00"},
		{"rm of the root", xswire.Rm, 0, "/\x00", xswire.Error, "EINVAL\x00"},
		{"read in an unknown transaction", xswire.Read, 9, "/a/b\x00", xswire.Error, "ENOENT\x00"},
		{"end of an unknown transaction", xswire.TransactionEnd, 9, "T\x00", xswire.Error, "ENOENT\x00"},
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
			req := xswire.Header{Type: tt.typ, ReqID: uint32(100 + i), TxID: tt.tx}
			if err := xswire.WriteMsg(c, req, []byte(tt.payload)); err != nil {
				t.Fatal(err)
			}
			reply, body, err := xswire.ReadMsg(c)
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
	call := func(c net.Conn, typ xswire.Type, tx uint32, payload string) (xswire.Type, string) {
		t.Helper()
		if err := xswire.WriteMsg(c, xswire.Header{Type: typ, TxID: tx}, []byte(payload)); err != nil {
			t.Fatal(err)
		}
		reply, body, err := xswire.ReadMsg(c)
		if err != nil {
			t.Fatal(err)
		}
		return reply.Type, string(body)
	}

	if typ, body := call(owner, xswire.TransactionStart, 0, "\x00"); typ != xswire.TransactionStart || body != "1\x00" {
		t.Fatalf("transaction start: type %d %q", typ, body)
	}
	call(owner, xswire.Write, 1, "/k\x00v")
	if _, body := call(owner, xswire.Read, 1, "/k\x00"); body != "v" {
		t.Errorf("transaction reads %q of its own write, want v", body)
	}
	if _, body := call(owner, xswire.Read, 0, "/k\x00"); body != "ENOENT\x00" {
		t.Errorf("uncommitted write visible outside the transaction: %q", body)
	}
	if _, body := call(other, xswire.Read, 1, "/k\x00"); body != "ENOENT\x00" {
		t.Errorf("another connection used the transaction: %q", body)
	}
	if _, body := call(owner, xswire.TransactionEnd, 1, "T\x00"); body != "OK\x00" {
		t.Fatalf("commit: %q", body)
	}
	if got, _ := s.Get("/k"); got != "v" {
		t.Errorf("after commit /k = %q, want v", got)
	}
}
