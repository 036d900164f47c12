// Package qubesdb reads the qube's QubesDB natively, over the daemon's Unix
// socket and its qdb_hdr wire protocol, so that no qubesdb-read process is
// needed. Reading is all the two tools do with QubesDB.
package qubesdb

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/qubes-netvm/qnet/internal/wire/qdb"
)

const (
	// DefaultSocket is where the daemon of a qube listens for read-write
	// clients.
	DefaultSocket = "/var/run/qubes/qubesdb.sock"
	// DefaultTimeout bounds the connect and each later call when Dial is
	// given no timeout.
	DefaultTimeout = 5 * time.Second
	// socketEnv overrides DefaultSocket; upstream has no such variable, tests
	// and the demo sandbox need one.
	socketEnv = "QUBESDB_SOCKET"
)

var (
	// ErrNotFound is wrapped by every error that means "no such entry"
	// (the daemon answered RESP_ERROR_NOENT).
	ErrNotFound = errors.New("QubesDB entry not found")
	// ErrRefused is wrapped when the daemon answered RESP_ERROR.
	ErrRefused = errors.New("refused by the QubesDB daemon")
	// ErrProtocol is wrapped when the daemon's reply breaks the protocol;
	// the connection is unusable afterwards.
	ErrProtocol = errors.New("QubesDB protocol violation")
)

// SocketPath is the socket to dial: $QUBESDB_SOCKET when set, else
// DefaultSocket.
func SocketPath() string {
	if p := os.Getenv(socketEnv); p != "" {
		return p
	}
	return DefaultSocket
}

// Client is one connection to the daemon. Its methods are safe for
// concurrent use; calls are serialised because the protocol has one request
// in flight at a time.
type Client struct {
	socket  string
	timeout time.Duration

	mu   sync.Mutex
	conn net.Conn // safe to Close concurrently; used by calls under mu
	// broken is the failure (timeout, I/O error, protocol violation) that
	// left the byte stream at an unknown position; every later call fails
	// with it rather than misreading a stale reply.
	broken error
}

// Dial connects to the daemon's socket at path. timeout bounds the connect
// and every later call; timeout <= 0 means DefaultTimeout.
func Dial(path string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	conn, err := net.DialTimeout("unix", path, timeout)
	if err != nil {
		return nil, fmt.Errorf("connect to QubesDB daemon at %s: %w", path, err)
	}
	return newClient(conn, path, timeout), nil
}

func newClient(conn net.Conn, socket string, timeout time.Duration) *Client {
	return &Client{socket: socket, timeout: timeout, conn: conn}
}

// Close closes the connection. It does not wait for a call in progress,
// which then fails at once instead of running into its deadline.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close QubesDB connection %s: %w", c.socket, err)
	}
	return nil
}

// Read returns the value at path; an error wrapping ErrNotFound when there is
// no such entry. A path the daemon would refuse, or one without the leading
// '/' every entry has, is refused before anything is sent.
func (c *Client) Read(path string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !strings.HasPrefix(path, "/") {
		return nil, fmt.Errorf("qubesdb read %q: %w: must start with '/'", path, qdb.ErrInvalidPath)
	}
	if err := qdb.ValidatePath(path); err != nil {
		return nil, fmt.Errorf("qubesdb read: %w", err)
	}
	if c.broken != nil {
		return nil, fmt.Errorf("qubesdb read %s: connection to %s unusable after an earlier failure: %w", path, c.socket, c.broken)
	}
	msg, err := qdb.Marshal(qdb.Header{Type: qdb.CmdRead, Path: path})
	if err != nil {
		return nil, fmt.Errorf("qubesdb read: %w", err)
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return nil, c.fail(path, err)
	}
	if _, err := c.conn.Write(msg); err != nil {
		return nil, c.fail(path, err)
	}
	h, err := c.reply(path)
	if err != nil {
		return nil, err
	}
	value := make([]byte, h.DataLen)
	if _, err := io.ReadFull(c.conn, value); err != nil {
		return nil, c.fail(path, err)
	}
	return value, nil
}

// reply reads the header answering a read of path and turns an error reply
// into ErrNotFound or ErrRefused. Anything but RESP_READ, RESP_ERROR_NOENT
// or RESP_ERROR about path, without data where none belongs, is a protocol
// violation: this client sets no watches, so not even RESP_WATCH may come.
// A data length the daemon never sends is refused, so a hostile one cannot
// make it allocate more than MaxData.
func (c *Client) reply(path string) (qdb.Header, error) {
	var buf [qdb.HeaderSize]byte
	if _, err := io.ReadFull(c.conn, buf[:]); err != nil {
		return qdb.Header{}, c.fail(path, err)
	}
	h, err := qdb.Unmarshal(buf[:])
	if err != nil {
		return qdb.Header{}, c.fail(path, err)
	}
	switch {
	case h.Path != path:
	case h.Type == qdb.RespRead && h.DataLen < qdb.MaxData:
		return h, nil
	case h.DataLen != 0:
	case h.Type == qdb.RespErrorNoent:
		return qdb.Header{}, fmt.Errorf("qubesdb read %s: %w", path, ErrNotFound)
	case h.Type == qdb.RespError:
		return qdb.Header{}, fmt.Errorf("qubesdb read %s: %w at %s", path, ErrRefused, c.socket)
	}
	return qdb.Header{}, c.fail(path, fmt.Errorf("%w: unexpected %s for %q with %d data bytes", ErrProtocol, h.Type, h.Path, h.DataLen))
}

// fail wraps an error that leaves the stream at an unknown position and
// marks the connection unusable.
func (c *Client) fail(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("qubesdb read %s: daemon at %s did not answer within %v (timeout): %w", path, c.socket, c.timeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("qubesdb read %s: daemon at %s closed the connection: %w", path, c.socket, err)
	default:
		err = fmt.Errorf("qubesdb read %s via %s: %w", path, c.socket, err)
	}
	c.broken = err
	return err
}
