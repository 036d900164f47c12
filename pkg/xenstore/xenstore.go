// Package xenstore is a XenStore client: it reads and writes nodes, and
// writes several in one transaction, by speaking the xsd_sockmsg wire
// protocol to xenstored's Unix socket or to the xenbus device, as
// libxenstore does, without cgo or external tools.
package xenstore

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/qubes-netvm/qnet/internal/wire/xs"
)

// DefaultTimeout bounds connecting and each request when the caller gives
// no timeout.
const DefaultTimeout = 5 * time.Second

// maxCommitAttempts bounds how often Transaction runs its function when
// the daemon keeps answering EAGAIN to the commit.
const maxCommitAttempts = 8

// ErrNotFound is what a missing node's error matches with errors.Is; it is
// ENOENT itself, so errors.Is(err, syscall.ENOENT) holds too.
const ErrNotFound = syscall.ENOENT

// Error is an ERROR reply from the daemon.
type Error struct {
	Op   string // request: "read", "write", "transaction-start", "transaction-end"
	Path string // XenStore path as the caller gave it; empty for transaction requests
	Name string // error name as the daemon sent it, e.g. "ENOENT"
	// Errno is the errno Name stands for; EIO when the name is not one of
	// Xen's xsd_errors.
	Errno syscall.Errno
}

func (e *Error) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("xenstore %s: %s", e.Op, e.Name)
	}
	return fmt.Sprintf("xenstore %s %s: %s", e.Op, e.Path, e.Name)
}

// Unwrap exposes the errno to errors.Is.
func (e *Error) Unwrap() error { return e.Errno }

// Client is a connection to XenStore. Its methods are safe for concurrent
// use; requests go out one at a time, as with libxenstore.
type Client struct {
	transport string // socket or device path, named in errors
	timeout   time.Duration
	conn      conn

	mu     sync.Mutex
	reqID  uint32
	broken error // set once the stream may be out of step; every later request fails
}

// conn is what both transports offer: net.Conn for the socket, *os.File
// for the device.
type conn interface {
	io.ReadWriteCloser
	SetDeadline(time.Time) error
}

// Dial connects where libxenstore's xs_open(0) would: first the daemon
// socket ($XENSTORED_PATH, else $XENSTORED_RUNDIR/socket, else
// /var/run/xenstored/socket), then the domain device ($XENSTORED_PATH, else
// /dev/xen/xenbus if it exists, else /proc/xen/xenbus). Whichever path is
// tried is used as a socket if it is one and opened as a device otherwise.
// In a domU such as a network qube only the device exists.
func Dial(timeout time.Duration) (*Client, error) {
	var errs []error
	for _, path := range transportPaths(os.Getenv, exists) {
		c, err := DialPath(path, timeout)
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// transportPaths lists the paths Dial tries, in order.
func transportPaths(getenv func(string) string, exists func(string) bool) []string {
	if path := getenv("XENSTORED_PATH"); path != "" {
		return []string{path}
	}
	rundir := getenv("XENSTORED_RUNDIR")
	if rundir == "" {
		rundir = "/var/run/xenstored"
	}
	device := "/proc/xen/xenbus"
	if exists("/dev/xen/xenbus") {
		device = "/dev/xen/xenbus"
	}
	return []string{rundir + "/socket", device}
}

// DialPath connects to the Unix socket or opens the xenbus device at path.
// timeout (DefaultTimeout when not positive) bounds the connection and
// every request made on it.
func DialPath(path string, timeout time.Duration) (*Client, error) {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("connect to xenstore: %w", err)
	}
	var c conn
	if info.Mode()&fs.ModeSocket != 0 {
		c, err = net.DialTimeout("unix", path, timeout)
	} else {
		c, err = os.OpenFile(path, os.O_RDWR, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("connect to xenstore %s: %w", path, err)
	}
	return &Client{transport: path, timeout: timeout, conn: c}, nil
}

// Close closes the connection; a request in progress fails.
func (c *Client) Close() error {
	if err := c.conn.Close(); err != nil {
		return fmt.Errorf("close xenstore %s: %w", c.transport, err)
	}
	return nil
}

// Read returns the value of the node at path.
func (c *Client) Read(path string) ([]byte, error) {
	payload, err := pathPayload("read", path, nil)
	if err != nil {
		return nil, err
	}
	return c.request("read", path, xs.Read, 0, payload)
}

// Write sets the node at path to value, creating it and missing parents.
func (c *Client) Write(path string, value []byte) error { return c.write(0, path, value) }

// Tx is a transaction in progress, valid only inside the function given
// to Transaction.
type Tx struct {
	c     *Client
	id    uint32
	ended atomic.Bool
}

// Write is Client.Write inside the transaction. It is refused once the
// transaction ended, because the daemon may by then have given its id to
// another transaction.
func (tx *Tx) Write(path string, value []byte) error {
	if tx.ended.Load() {
		return fmt.Errorf("xenstore write %s: transaction %d already ended", path, tx.id)
	}
	return tx.c.write(tx.id, path, value)
}

// Transaction runs fn in a transaction and commits it. When fn fails the
// transaction is aborted and fn's error returned. When the commit answers
// EAGAIN (another writer got in between) the whole transaction, fn
// included, is run again, up to maxCommitAttempts times.
func (c *Client) Transaction(fn func(tx *Tx) error) error {
	for attempt := 1; ; attempt++ {
		id, err := c.startTransaction()
		if err != nil {
			return err
		}
		tx := &Tx{c: c, id: id}
		err = fn(tx)
		tx.ended.Store(true)
		if err != nil {
			if abortErr := c.endTransaction(id, false); abortErr != nil {
				return errors.Join(err, abortErr)
			}
			return err
		}
		err = c.endTransaction(id, true)
		if err == nil || !errors.Is(err, syscall.EAGAIN) {
			return err
		}
		if attempt == maxCommitAttempts {
			return fmt.Errorf("xenstore transaction: gave up after %d commits: %w", attempt, err)
		}
	}
}

func (c *Client) write(txID uint32, path string, value []byte) error {
	payload, err := pathPayload("write", path, value)
	if err != nil {
		return err
	}
	_, err = c.request("write", path, xs.Write, txID, payload)
	return err
}

// pathPayload builds "path\0", or "path\0value" for a write (value is nil
// for every other request; it has no terminator), refusing what the daemon
// would reject or choke on.
func pathPayload(op, path string, value []byte) ([]byte, error) {
	switch {
	case path == "":
		return nil, fmt.Errorf("xenstore %s: empty path: %w", op, syscall.EINVAL)
	case strings.IndexByte(path, 0) >= 0:
		return nil, fmt.Errorf("xenstore %s %q: path contains NUL: %w", op, path, syscall.EINVAL)
	}
	size := len(path) + 1 + len(value)
	if size > xs.PayloadMax {
		return nil, fmt.Errorf("xenstore %s %s: request of %d bytes exceeds the %d-byte limit: %w",
			op, path, size, xs.PayloadMax, syscall.E2BIG)
	}
	payload := make([]byte, 0, size)
	payload = append(append(payload, path...), 0)
	return append(payload, value...), nil
}

func (c *Client) startTransaction() (uint32, error) {
	reply, err := c.request("transaction-start", "", xs.TransactionStart, 0, []byte{0})
	if err != nil {
		return 0, err
	}
	text := string(bytes.TrimSuffix(reply, []byte{0}))
	id, err := strconv.ParseUint(text, 10, 32)
	if err != nil || id == 0 {
		return 0, fmt.Errorf("xenstore transaction-start via %s: bad transaction id %q", c.transport, text)
	}
	return uint32(id), nil
}

func (c *Client) endTransaction(id uint32, commit bool) error {
	payload := []byte("F\x00")
	if commit {
		payload = []byte("T\x00")
	}
	_, err := c.request("transaction-end", "", xs.TransactionEnd, id, payload)
	return err
}

// request sends one request and returns its reply's payload. An ERROR
// reply becomes an *Error; a transport failure or timeout leaves the
// stream in an unknown state, so it also breaks the client.
func (c *Client) request(op, path string, typ xs.Type, txID uint32, payload []byte) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	where := strings.TrimSuffix(op+" "+path, " ")
	if c.broken != nil {
		return nil, fmt.Errorf("xenstore %s via %s: connection unusable after an earlier failure: %w", where, c.transport, c.broken)
	}
	c.reqID++
	reply, body, err := c.exchange(xs.Header{Type: typ, ReqID: c.reqID, TxID: txID}, payload)
	if err == nil && reply.Type != xs.Error && reply.Type != typ {
		err = fmt.Errorf("reply of type %d to a request of type %d", reply.Type, typ)
	}
	if err != nil {
		c.broken = err
		return nil, fmt.Errorf("xenstore %s via %s: %w", where, c.transport, err)
	}
	if reply.Type == xs.Error {
		name := string(bytes.TrimSuffix(body, []byte{0}))
		errno, ok := xs.Errno(name)
		if !ok {
			errno = syscall.EIO
		}
		return nil, &Error{Op: op, Path: path, Name: name, Errno: errno}
	}
	return body, nil
}

// exchange writes the request and reads until its reply, within the
// client's timeout. It skips watch events (this client sets no watches,
// but the daemon or kernel may still deliver some) and replies to other
// request ids.
func (c *Client) exchange(req xs.Header, payload []byte) (xs.Header, []byte, error) {
	expired := c.armDeadline()
	reply, body, err := c.exchangeUnbounded(req, payload)
	// A reply that raced the timer still counts as late: the timer has
	// closed the device, so the client must be marked broken either way.
	if timedOut := expired(); timedOut || errors.Is(err, os.ErrDeadlineExceeded) {
		switch {
		case err == nil:
			err = os.ErrDeadlineExceeded
		case !errors.Is(err, os.ErrDeadlineExceeded):
			err = fmt.Errorf("%w (closed the transport to end the wait: %v)", os.ErrDeadlineExceeded, err)
		}
		return xs.Header{}, nil, fmt.Errorf("timeout after %v: %w", c.timeout, err)
	}
	return reply, body, err
}

func (c *Client) exchangeUnbounded(req xs.Header, payload []byte) (xs.Header, []byte, error) {
	if err := xs.WriteMsg(c.conn, req, payload); err != nil {
		return xs.Header{}, nil, err
	}
	for {
		reply, body, err := xs.ReadMsg(c.conn)
		if err != nil {
			return xs.Header{}, nil, err
		}
		if reply.Type != xs.WatchEvent && reply.ReqID == req.ReqID {
			return reply, body, nil
		}
	}
}

// armDeadline bounds the exchange about to start and returns a function
// that lifts the bound and reports whether it struck. Sockets (and a
// pollable device) take a deadline; otherwise closing the device from a
// timer is the only way to end a blocked read.
func (c *Client) armDeadline() (disarm func() (expired bool)) {
	if err := c.conn.SetDeadline(time.Now().Add(c.timeout)); err == nil {
		return func() bool { return false }
	}
	var fired atomic.Bool
	timer := time.AfterFunc(c.timeout, func() {
		fired.Store(true)
		c.conn.Close()
	})
	return func() bool {
		timer.Stop()
		return fired.Load()
	}
}
