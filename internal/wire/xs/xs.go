// Package xs frames XenStore messages: the 16-byte xsd_sockmsg header
// and its payload, as both the client and the fake daemon send and read them.
package xs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"syscall"
)

// Type is a message type of Xen's enum xsd_sockmsg_type.
type Type uint32

// The message types this project sends, answers or has to recognise.
const (
	Directory        Type = 1
	Read             Type = 2
	GetPerms         Type = 3
	TransactionStart Type = 6
	TransactionEnd   Type = 7
	Write            Type = 11
	Rm               Type = 13
	WatchEvent       Type = 15
	Error            Type = 16
)

const (
	// HeaderSize is the size of struct xsd_sockmsg.
	HeaderSize = 16
	// PayloadMax is XENSTORE_PAYLOAD_MAX; xenstored drops a connection
	// that sends more.
	PayloadMax = 4096
)

// ErrPayloadTooLarge reports a header announcing more than PayloadMax bytes.
var ErrPayloadTooLarge = errors.New("xenstore payload exceeds 4096 bytes")

// Header is struct xsd_sockmsg. Xen lays it out in the host's byte order.
type Header struct {
	Type  Type
	ReqID uint32
	TxID  uint32
	Len   uint32
}

// DecodeHeader parses a header. It refuses a payload length above
// PayloadMax so that a reader never allocates on a peer's say-so.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) != HeaderSize {
		return Header{}, fmt.Errorf("xenstore header of %d bytes, want %d", len(b), HeaderSize)
	}
	h := Header{
		Type:  Type(binary.NativeEndian.Uint32(b[0:])),
		ReqID: binary.NativeEndian.Uint32(b[4:]),
		TxID:  binary.NativeEndian.Uint32(b[8:]),
		Len:   binary.NativeEndian.Uint32(b[12:]),
	}
	if h.Len > PayloadMax {
		return Header{}, fmt.Errorf("header of type %d announces %d bytes: %w", h.Type, h.Len, ErrPayloadTooLarge)
	}
	return h, nil
}

// Append appends the encoded header to b.
func (h Header) Append(b []byte) []byte {
	b = binary.NativeEndian.AppendUint32(b, uint32(h.Type))
	b = binary.NativeEndian.AppendUint32(b, h.ReqID)
	b = binary.NativeEndian.AppendUint32(b, h.TxID)
	return binary.NativeEndian.AppendUint32(b, h.Len)
}

// ReadMsg reads one whole message. A stream that ends inside a message is
// an error (io.ErrUnexpectedEOF), never a short message.
func ReadMsg(r io.Reader) (Header, []byte, error) {
	var raw [HeaderSize]byte
	if _, err := io.ReadFull(r, raw[:]); err != nil {
		return Header{}, nil, fmt.Errorf("read xenstore header: %w", err)
	}
	h, err := DecodeHeader(raw[:])
	if err != nil {
		return Header{}, nil, err
	}
	payload := make([]byte, h.Len)
	if _, err := io.ReadFull(r, payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, fmt.Errorf("read xenstore payload of %d bytes: %w", h.Len, err)
	}
	return h, payload, nil
}

// WriteMsg sends h (with Len set from payload) and payload in a single
// write, because the xenbus device takes a message per write best.
func WriteMsg(w io.Writer, h Header, payload []byte) error {
	if len(payload) > PayloadMax {
		return fmt.Errorf("write message of type %d with %d bytes: %w", h.Type, len(payload), ErrPayloadTooLarge)
	}
	h.Len = uint32(len(payload))
	if _, err := w.Write(append(h.Append(make([]byte, 0, HeaderSize+len(payload))), payload...)); err != nil {
		return fmt.Errorf("write xenstore message of type %d: %w", h.Type, err)
	}
	return nil
}

// errnos maps every name of Xen's xsd_errors table to its errno.
var errnos = map[string]syscall.Errno{
	"EINVAL":    syscall.EINVAL,
	"EACCES":    syscall.EACCES,
	"EEXIST":    syscall.EEXIST,
	"EISDIR":    syscall.EISDIR,
	"ENOENT":    syscall.ENOENT,
	"ENOMEM":    syscall.ENOMEM,
	"ENOSPC":    syscall.ENOSPC,
	"EIO":       syscall.EIO,
	"ENOTEMPTY": syscall.ENOTEMPTY,
	"ENOSYS":    syscall.ENOSYS,
	"EROFS":     syscall.EROFS,
	"EBUSY":     syscall.EBUSY,
	"EAGAIN":    syscall.EAGAIN,
	"EISCONN":   syscall.EISCONN,
	"E2BIG":     syscall.E2BIG,
	"EPERM":     syscall.EPERM,
}

// Errno returns the errno that an ERROR reply's name stands for.
func Errno(name string) (syscall.Errno, bool) {
	errno, ok := errnos[name]
	return errno, ok
}
