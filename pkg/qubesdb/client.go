// Package qubesdb talks to the qube's QubesDB daemon natively, over its Unix
// socket and its qdb_hdr wire protocol, so that no qubesdb-read process is
// needed.
package qubesdb

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"
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

// Entry is one path and its value, as MULTIREAD returns them.
type Entry struct {
	Path  string
	Value []byte
}

// Client is one connection to the daemon. Its methods are safe for
// concurrent use; calls are serialised because the protocol has one request
// in flight at a time.
type Client struct {
	socket  string
	timeout time.Duration

	mu      sync.Mutex
	conn    net.Conn // safe to Close concurrently; used by calls under mu
	watches []string // watch events that arrived while waiting for replies
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

// PendingWatches returns the paths of the watch events received so far, in
// arrival order, and empties the queue.
func (c *Client) PendingWatches() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.watches
	c.watches = nil
	return w
}

// Read returns the value at path; an error wrapping ErrNotFound when there is
// no such entry.
func (c *Client) Read(path string) ([]byte, error) {
	const op = "read"
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkPath(op, path); err != nil {
		return nil, err
	}
	if err := c.send(op, Header{Type: CmdRead, Path: path}, nil); err != nil {
		return nil, err
	}
	h, err := c.reply(op, path)
	if err != nil {
		return nil, err
	}
	if h.Type != RespRead {
		return nil, c.failure(op, path, h)
	}
	if h.Path != path {
		return nil, c.violation(op, path, h)
	}
	return c.data(op, path, h.DataLen)
}

// Multiread returns every entry whose path starts with prefix (a plain string
// prefix, '/' or not), in the order the daemon sends them.
func (c *Client) Multiread(prefix string) ([]Entry, error) {
	return c.stream("multiread", CmdMultiread, RespMultiread, prefix)
}

// List returns the paths that start with prefix, in the daemon's order.
func (c *Client) List(prefix string) ([]string, error) {
	entries, err := c.stream("list", CmdList, RespList, prefix)
	if err != nil {
		return nil, err
	}
	paths := make([]string, len(entries))
	for i, e := range entries {
		paths[i] = e.Path
	}
	return paths, nil
}

// stream runs a command answered by a series of entries that ends with an
// empty-path, empty-data terminator.
func (c *Client) stream(op string, cmd, resp MsgType, prefix string) ([]Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkPath(op, prefix); err != nil {
		return nil, err
	}
	if err := c.send(op, Header{Type: cmd, Path: prefix}, nil); err != nil {
		return nil, err
	}
	var entries []Entry
	for {
		h, err := c.reply(op, prefix)
		if err != nil {
			return nil, err
		}
		if h.Type != resp {
			return nil, c.failure(op, prefix, h)
		}
		if h.Path == "" {
			if h.DataLen != 0 {
				return nil, c.violation(op, prefix, h)
			}
			return entries, nil
		}
		if !strings.HasPrefix(h.Path, prefix) {
			return nil, c.violation(op, prefix, h)
		}
		value, err := c.data(op, prefix, h.DataLen)
		if err != nil {
			return nil, err
		}
		entries = append(entries, Entry{Path: h.Path, Value: value})
	}
}

// Write sets path to value, creating the entry if needed.
func (c *Client) Write(path string, value []byte) error {
	const op = "write"
	if strings.HasSuffix(path, "/") {
		return fmt.Errorf("qubesdb %s %q: %w: an entry path cannot end with '/'", op, path, ErrInvalidPath)
	}
	if len(value) >= MaxData {
		return fmt.Errorf("qubesdb %s %s: value is %d bytes, the daemon accepts at most %d", op, path, len(value), MaxData-1)
	}
	if i := bytes.IndexByte(value, 0); i >= 0 {
		return fmt.Errorf("qubesdb %s %s: value has a NUL byte at offset %d of %d, the daemon refuses NUL", op, path, i, len(value))
	}
	return c.simple(op, CmdWrite, path, value)
}

// Rm removes the entry at path or, when path ends with '/', every entry under
// it. Removing nothing gives an error wrapping ErrNotFound.
func (c *Client) Rm(path string) error {
	return c.simple("rm", CmdRm, path, nil)
}

// Watch asks for an event whenever the entry at path changes (every entry
// under it when path ends with '/'); the path need not exist yet. Events
// are collected by PendingWatches.
func (c *Client) Watch(path string) error {
	return c.simple("watch", CmdWatch, path, nil)
}

// Unwatch cancels one Watch of path; ErrNotFound when there was none. Events
// already on the way may still arrive.
func (c *Client) Unwatch(path string) error {
	return c.simple("unwatch", CmdUnwatch, path, nil)
}

// simple runs a command answered by a single data-less RESP_OK.
func (c *Client) simple(op string, cmd MsgType, path string, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := checkPath(op, path); err != nil {
		return err
	}
	if err := c.send(op, Header{Type: cmd, Path: path, DataLen: uint32(len(data))}, data); err != nil {
		return err
	}
	h, err := c.reply(op, path)
	if err != nil {
		return err
	}
	if h.Type != RespOK {
		return c.failure(op, path, h)
	}
	if h.Path != path || h.DataLen != 0 {
		return c.violation(op, path, h)
	}
	return nil
}

// checkPath refuses, before anything is sent, a path the daemon would refuse
// or one without the leading '/' that every QubesDB entry has.
func checkPath(op, path string) error {
	if !strings.HasPrefix(path, "/") {
		return fmt.Errorf("qubesdb %s %q: %w: must start with '/'", op, path, ErrInvalidPath)
	}
	if err := ValidatePath(path); err != nil {
		return fmt.Errorf("qubesdb %s: %w", op, err)
	}
	return nil
}

// send writes one request, header and data in a single write, after arming
// the deadline that bounds the whole call.
func (c *Client) send(op string, h Header, data []byte) error {
	if c.broken != nil {
		return fmt.Errorf("qubesdb %s %s: connection to %s unusable after an earlier failure: %w", op, h.Path, c.socket, c.broken)
	}
	msg, err := MarshalHeader(h)
	if err != nil {
		return fmt.Errorf("qubesdb %s: %w", op, err)
	}
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err != nil {
		return c.fail(op, h.Path, err)
	}
	if _, err := c.conn.Write(append(msg, data...)); err != nil {
		return c.fail(op, h.Path, err)
	}
	return nil
}

// reply reads headers until one is not a watch event; watch events are
// queued for PendingWatches. It refuses data lengths the daemon never sends,
// so a hostile length cannot make it allocate more than MaxData.
func (c *Client) reply(op, path string) (Header, error) {
	var buf [HeaderSize]byte
	for {
		if _, err := io.ReadFull(c.conn, buf[:]); err != nil {
			return Header{}, c.fail(op, path, err)
		}
		h, err := UnmarshalHeader(buf[:])
		if err != nil {
			return Header{}, c.fail(op, path, err)
		}
		if h.DataLen >= MaxData || (h.Type == RespWatch && h.DataLen != 0) {
			return Header{}, c.violation(op, path, h)
		}
		if h.Type != RespWatch {
			return h, nil
		}
		c.watches = append(c.watches, h.Path)
	}
}

// data reads the n data bytes that follow a reply header.
func (c *Client) data(op, path string, n uint32) ([]byte, error) {
	b := make([]byte, n)
	if _, err := io.ReadFull(c.conn, b); err != nil {
		return nil, c.fail(op, path, err)
	}
	return b, nil
}

// failure turns a reply other than the expected one into an error:
// ErrNotFound or ErrRefused for a well-formed error reply about path, a
// protocol violation for anything else.
func (c *Client) failure(op, path string, h Header) error {
	if h.Path != path || h.DataLen != 0 {
		return c.violation(op, path, h)
	}
	switch h.Type {
	case RespErrorNoent:
		return fmt.Errorf("qubesdb %s %s: %w", op, path, ErrNotFound)
	case RespError:
		return fmt.Errorf("qubesdb %s %s: %w at %s", op, path, ErrRefused, c.socket)
	}
	return c.violation(op, path, h)
}

func (c *Client) violation(op, path string, h Header) error {
	return c.fail(op, path, fmt.Errorf("%w: unexpected %s for %q with %d data bytes", ErrProtocol, h.Type, h.Path, h.DataLen))
}

// fail wraps an error that leaves the stream at an unknown position and
// marks the connection unusable.
func (c *Client) fail(op, path string, err error) error {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = fmt.Errorf("qubesdb %s %s: daemon at %s did not answer within %v (timeout): %w", op, path, c.socket, c.timeout, err)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		err = fmt.Errorf("qubesdb %s %s: daemon at %s closed the connection: %w", op, path, c.socket, err)
	default:
		err = fmt.Errorf("qubesdb %s %s via %s: %w", op, path, c.socket, err)
	}
	c.broken = err
	return err
}
