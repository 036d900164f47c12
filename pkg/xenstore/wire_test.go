package xenstore

import (
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/wire/xs"
)

func TestTransportPaths(t *testing.T) {
	tests := []struct {
		name      string
		env       map[string]string
		devExists bool
		want      []string
	}{
		{"defaults in a domU", nil, true, []string{"/var/run/xenstored/socket", "/dev/xen/xenbus"}},
		{"defaults without /dev/xen", nil, false, []string{"/var/run/xenstored/socket", "/proc/xen/xenbus"}},
		{"XENSTORED_RUNDIR", map[string]string{"XENSTORED_RUNDIR": "/run/xs"}, true, []string{"/run/xs/socket", "/dev/xen/xenbus"}},
		{"XENSTORED_PATH wins", map[string]string{"XENSTORED_PATH": "/tmp/xs.sock", "XENSTORED_RUNDIR": "/run/xs"}, true, []string{"/tmp/xs.sock"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := transportPaths(func(k string) string { return tt.env[k] }, func(string) bool { return tt.devExists })
			if !slices.Equal(got, tt.want) {
				t.Errorf("transportPaths = %q, want %q", got, tt.want)
			}
		})
	}
}

// pipeClient returns a client on one end of a pipe and the daemon's end.
func pipeClient(t *testing.T, timeout time.Duration) (*Client, net.Conn) {
	t.Helper()
	clientEnd, daemonEnd := net.Pipe()
	t.Cleanup(func() { clientEnd.Close(); daemonEnd.Close() })
	return &Client{transport: "pipe", timeout: timeout, conn: clientEnd}, daemonEnd
}

// answer reads one request on daemon and sends back the given messages;
// it returns what it read.
func answer(t *testing.T, daemon net.Conn, replies func(req xs.Header) []byte) <-chan xs.Header {
	t.Helper()
	got := make(chan xs.Header, 1)
	go func() {
		req, _, err := xs.ReadMsg(daemon)
		if err != nil {
			close(got)
			return
		}
		got <- req
		daemon.Write(replies(req))
	}()
	return got
}

func msg(typ xs.Type, reqID uint32, payload string) []byte {
	h := xs.Header{Type: typ, ReqID: reqID, Len: uint32(len(payload))}
	return append(h.Append(nil), payload...)
}

func TestSkipsWatchEventsAndOtherReplies(t *testing.T) {
	c, daemon := pipeClient(t, 5*time.Second)
	answer(t, daemon, func(req xs.Header) []byte {
		var b []byte
		b = append(b, msg(xs.WatchEvent, 0, "/x\x00tok\x00")...)
		b = append(b, msg(xs.Read, req.ReqID+7, "stale")...)
		return append(b, msg(xs.Read, req.ReqID, "value")...)
	})
	got, err := c.Read("/k")
	if err != nil || string(got) != "value" {
		t.Fatalf("Read = %q, %v; want the reply matching the request id", got, err)
	}
}

func TestMalformedReplies(t *testing.T) {
	tooLong := xs.Header{Type: xs.Read, ReqID: 1, Len: xs.PayloadMax + 1}
	tests := []struct {
		name    string
		stream  []byte
		wantErr error
		inMsg   string
	}{
		{"payload cut short", msg(xs.Read, 1, "value")[:xs.HeaderSize+2], io.ErrUnexpectedEOF, "via pipe"},
		{"header cut short", msg(xs.Read, 1, "")[:5], io.ErrUnexpectedEOF, "read /k"},
		{"payload over 4096", tooLong.Append(nil), xs.ErrPayloadTooLarge, "4097"},
		{"reply of another type", msg(xs.Write, 1, "OK\x00"), nil, "reply of type 11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, daemon := pipeClient(t, 5*time.Second)
			go func() {
				if _, _, err := xs.ReadMsg(daemon); err == nil {
					daemon.Write(tt.stream)
				}
				daemon.Close()
			}()
			_, err := c.Read("/k")
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) || !strings.Contains(err.Error(), tt.inMsg) {
				t.Fatalf("Read: %v, want %v naming %q", err, tt.wantErr, tt.inMsg)
			}
			if _, err := c.Read("/k"); err == nil || !strings.Contains(err.Error(), "unusable") {
				t.Errorf("request after a broken stream: %v, want refusal", err)
			}
		})
	}
}

func TestBadTransactionID(t *testing.T) {
	for _, id := range []string{"0\x00", "x\x00", "4294967296\x00", ""} {
		c, daemon := pipeClient(t, 5*time.Second)
		answer(t, daemon, func(req xs.Header) []byte { return msg(xs.TransactionStart, req.ReqID, id) })
		err := c.Transaction(func(*Tx) error { t.Error("fn ran without a transaction"); return nil })
		if err == nil || !strings.Contains(err.Error(), "bad transaction id") {
			t.Errorf("transaction id %q: %v, want refusal", id, err)
		}
	}
}

// undeadlinedConn is a transport that cannot take deadlines, like a
// device file the runtime cannot poll.
type undeadlinedConn struct{ net.Conn }

func (undeadlinedConn) SetDeadline(time.Time) error { return os.ErrNoDeadline }

func TestTimeoutWithoutDeadlineSupport(t *testing.T) {
	clientEnd, daemon := net.Pipe()
	t.Cleanup(func() { clientEnd.Close(); daemon.Close() })
	c := &Client{transport: "/dev/xen/xenbus", timeout: 50 * time.Millisecond, conn: undeadlinedConn{clientEnd}}
	go io.Copy(io.Discard, daemon) // takes the request, never answers

	_, err := c.Read("/k")
	if err == nil || !strings.Contains(err.Error(), "timeout") || !strings.Contains(err.Error(), "/k") ||
		!strings.Contains(err.Error(), "/dev/xen/xenbus") {
		t.Fatalf("Read: %v, want a timeout naming path and device", err)
	}
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("%v does not match os.ErrDeadlineExceeded", err)
	}
}

func TestDialPathErrors(t *testing.T) {
	missing := t.TempDir() + "/absent"
	if _, err := DialPath(missing, 0); !errors.Is(err, syscall.ENOENT) || !strings.Contains(err.Error(), missing) {
		t.Errorf("DialPath(%s): %v, want ENOENT naming it", missing, err)
	}
}

// FuzzClientReply feeds an arbitrary byte stream as the daemon's answer
// to each kind of request: the client must return, never panic or hang.
func FuzzClientReply(f *testing.F) {
	f.Add(byte(0), msg(xs.Read, 1, "value"))
	f.Add(byte(1), msg(xs.Error, 1, "ENOENT\x00"))
	f.Add(byte(2), append(msg(xs.TransactionStart, 1, "5\x00"), append(msg(xs.Write, 2, "OK\x00"), msg(xs.Error, 3, "EAGAIN\x00")...)...))
	f.Fuzz(func(t *testing.T, op byte, stream []byte) {
		clientEnd, daemon := net.Pipe()
		c := &Client{transport: "pipe", timeout: 10 * time.Second, conn: clientEnd}
		done := make(chan struct{})
		go func() { io.Copy(io.Discard, daemon); close(done) }()
		go func() { daemon.Write(stream); daemon.Close() }()

		switch op % 3 {
		case 0:
			if value, err := c.Read("/k"); err == nil && len(value) > xs.PayloadMax {
				t.Errorf("Read returned %d bytes", len(value))
			}
		case 1:
			c.Write("/k", []byte("v"))
		case 2:
			c.Transaction(func(tx *Tx) error { return tx.Write("/k", []byte("v")) })
		}
		clientEnd.Close()
		<-done
	})
}
