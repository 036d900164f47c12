// Package nfnl sends raw nfnetlink requests and nftables batches for the
// few messages google/nftables v0.3.0 cannot send or cannot confirm: a
// non-dump GET of one object, a filtered ctnetlink dump, and batches
// mixing library-encoded messages with hand-encoded ones.
//
// Every reply is matched to its request by sequence number, never
// counted. google/nftables v0.3.0 counts acknowledgements per message:
// when a message makes the kernel autoload a module, the kernel replays
// the batch and sends one acknowledgement more than there are messages, so
// a count-based reader stops early and never reads the last message's
// error, reporting a rejected batch as applied (google/nftables issue
// #329). Waiting here for the acknowledgement of each sequence number,
// errors included, and then replacing the socket (so that the duplicate
// cannot be read as the reply to the next request) is the one workaround
// for that in this module; callers need no read-back to know a batch was
// applied.
package nfnl

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Conn is one NETLINK_NETFILTER socket; one run keeps one open for all its
// netfilter requests.
type Conn struct {
	c   *netlink.Conn
	cfg *netlink.Config
}

// Dial opens a socket in the calling thread's network namespace, or, with
// netns > 0, in the namespace that file descriptor refers to.
func Dial(netns int) (*Conn, error) {
	var cfg *netlink.Config
	if netns > 0 {
		cfg = &netlink.Config{NetNS: netns}
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open nfnetlink socket: %w", err)
	}
	return &Conn{c: c, cfg: cfg}, nil
}

// Close closes the socket.
func (c *Conn) Close() error { return c.c.Close() }

// Subsystems and their message types as the header's type field carries
// them.
const (
	SubsysCtnetlink = unix.NFNL_SUBSYS_CTNETLINK
	SubsysNftables  = unix.NFNL_SUBSYS_NFTABLES
)

// Request is one nfnetlink message: subsystem, message type, address
// family, extra header flags (Request is always set) and the attributes
// after the nfgenmsg header.
func Request(subsys, msgType int, family uint8, flags netlink.HeaderFlags, attrs []byte) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(subsys<<8 | msgType),
			Flags: netlink.Request | flags,
		},
		Data: append(nfgenmsg(family, 0), attrs...),
	}
}

// nfgenmsg is the header every nfnetlink message starts with.
func nfgenmsg(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}

// Encode returns attributes in the byte order nfnetlink uses (big endian
// for integers).
func Encode(fill func(ae *netlink.AttributeEncoder)) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	fill(ae)
	return ae.Encode()
}

// Get sends one non-dump request and returns the kernel's answer (the
// attributes after the nfgenmsg header of each reply). found is false when
// the kernel answered ENOENT: the object does not exist.
func (c *Conn) Get(m netlink.Message) (replies [][]byte, found bool, err error) {
	msgs, err := c.c.Execute(m)
	if errors.Is(err, unix.ENOENT) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	for _, r := range msgs {
		if len(r.Data) >= 4 {
			replies = append(replies, r.Data[4:])
		}
	}
	return replies, true, nil
}

// ErrDumpInterrupted marks a dump the kernel flagged as inconsistent (its
// table changed under it); what it returned is valid but may be partial.
var ErrDumpInterrupted = errors.New("netlink dump interrupted")

// Dump sends m as a dump request and returns each reply's attributes. When
// the kernel flags the dump as interrupted the replies come back together
// with ErrDumpInterrupted.
func (c *Conn) Dump(m netlink.Message) ([][]byte, error) {
	m.Header.Flags |= netlink.Dump
	msgs, err := c.c.Execute(m)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	interrupted := false
	for _, r := range msgs {
		interrupted = interrupted || r.Header.Flags&netlink.DumpInterrupted != 0
		if len(r.Data) >= 4 {
			out = append(out, r.Data[4:])
		}
	}
	if interrupted {
		return out, ErrDumpInterrupted
	}
	return out, nil
}

// Each sends the messages one at a time (each acknowledged on its own,
// not a batch) and returns one error per message, nil where the kernel
// accepted it.
func (c *Conn) Each(msgs []netlink.Message) ([]error, error) {
	errs := make([]error, len(msgs))
	for i, m := range msgs {
		m.Header.Flags |= netlink.Acknowledge
		if _, err := c.c.Execute(m); err != nil {
			var op *netlink.OpError
			if !errors.As(err, &op) {
				return nil, err
			}
			errs[i] = err
		}
	}
	return errs, nil
}

// Batch sends the nftables messages as one transaction (wrapped in batch
// begin and end, every message acknowledged) and returns the kernel's
// error if it rejected any message; the kernel applies all of it or none.
func (c *Conn) Batch(msgs []netlink.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	all := make([]netlink.Message, 0, len(msgs)+2)
	all = append(all, batchMessage(unix.NFNL_MSG_BATCH_BEGIN))
	for _, m := range msgs {
		m.Header.Flags |= netlink.Request | netlink.Acknowledge
		m.Header.Sequence = 0
		all = append(all, m)
	}
	all = append(all, batchMessage(unix.NFNL_MSG_BATCH_END))
	sent, err := c.c.SendMessages(all)
	if err != nil {
		return fmt.Errorf("send nftables batch: %w", err)
	}
	pending := map[uint32]bool{}
	for _, m := range sent {
		if m.Header.Flags&netlink.Acknowledge != 0 {
			pending[m.Header.Sequence] = true
		}
	}
	for len(pending) > 0 {
		replies, err := c.c.Receive()
		if err != nil {
			// The rest of the batch's replies are still queued on the
			// socket: a fresh one keeps later requests from reading them.
			return errors.Join(err, c.redial())
		}
		for _, r := range replies {
			delete(pending, r.Header.Sequence)
		}
	}
	// After a module autoload the kernel can still send a duplicate
	// acknowledgement (#329): on a fresh socket it cannot be taken for the
	// reply to the next request.
	return c.redial()
}

func (c *Conn) redial() error {
	c.c.Close()
	fresh, err := netlink.Dial(unix.NETLINK_NETFILTER, c.cfg)
	if err != nil {
		return fmt.Errorf("reopen nfnetlink socket: %w", err)
	}
	c.c = fresh
	return nil
}

func batchMessage(msgType int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(msgType), Flags: netlink.Request},
		Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	}
}

// Queued returns the messages fill queues on a google/nftables Conn,
// without sending them, so that they can go to the kernel in a Batch
// together with hand-encoded ones.
func Queued(fill func(c *nftables.Conn) error) ([]netlink.Message, error) {
	var queued []netlink.Message
	c, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		acks := make([]netlink.Message, 0, len(req))
		for _, m := range req {
			t := uint16(m.Header.Type)
			if t == unix.NFNL_MSG_BATCH_BEGIN || t == unix.NFNL_MSG_BATCH_END {
				continue
			}
			queued = append(queued, m)
			if m.Header.Flags&netlink.Acknowledge != 0 {
				acks = append(acks, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: m.Header.Sequence, PID: m.Header.PID}, Data: make([]byte, 4)})
			}
		}
		return acks, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("nftables encoder: %w", err)
	}
	if err := fill(c); err != nil {
		return nil, err
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("encode nftables messages: %w", err)
	}
	return queued, nil
}
