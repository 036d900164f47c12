// Package qdb is QubesDB's wire format, shared by the client and the
// fake daemon: the qdb_hdr message header and the daemon's path rule.
package qdb

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// MsgType is the first byte of a message header: a command from a client or
// a response from the daemon.
type MsgType uint8

// The message types, numbered as in upstream's enum qdb_msg.
const (
	CmdRead MsgType = iota
	CmdWrite
	CmdMultiread
	CmdList
	CmdRm
	CmdWatch
	CmdUnwatch
	RespOK
	RespErrorNoent
	RespError
	RespRead
	RespMultiread
	RespList
	RespWatch
)

var msgTypeNames = [...]string{
	"CMD_READ", "CMD_WRITE", "CMD_MULTIREAD", "CMD_LIST", "CMD_RM", "CMD_WATCH", "CMD_UNWATCH",
	"RESP_OK", "RESP_ERROR_NOENT", "RESP_ERROR", "RESP_READ", "RESP_MULTIREAD", "RESP_LIST", "RESP_WATCH",
}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("type %d", uint8(t))
}

const (
	// MaxPath is the size of the header's path field, terminating NUL
	// included: a path must be shorter than this.
	MaxPath = 64
	// MaxData is upstream's QDB_MAX_DATA. The daemon refuses a message whose
	// data_len is MaxData or more, so a value holds at most MaxData-1 bytes.
	MaxData = 3072
	// HeaderSize is sizeof(struct qdb_hdr) with the C compiler's alignment.
	HeaderSize = 72
)

// Byte offsets inside the header: the path follows the type byte, and
// data_len sits after 3 bytes of alignment padding.
const (
	offPath    = 1
	offDataLen = 68
)

// Header is one decoded message header; DataLen bytes of data follow it on
// the wire.
type Header struct {
	Type    MsgType
	Path    string
	DataLen uint32
}

// Marshal encodes h in the daemon's layout, in host byte order, with
// every byte after the path's NUL zeroed (the C client leaves them
// uninitialised; the daemon ignores them).
func Marshal(h Header) ([]byte, error) {
	if len(h.Path) >= MaxPath {
		return nil, fmt.Errorf("encode header for %q: path is %d bytes, must be under %d", h.Path, len(h.Path), MaxPath)
	}
	if strings.IndexByte(h.Path, 0) >= 0 {
		return nil, fmt.Errorf("encode header for %q: path contains NUL", h.Path)
	}
	b := make([]byte, HeaderSize)
	b[0] = byte(h.Type)
	copy(b[offPath:], h.Path)
	binary.NativeEndian.PutUint32(b[offDataLen:], h.DataLen)
	return b, nil
}

// Unmarshal decodes a header. Like the daemon, it treats the last path
// byte as a terminator, so the decoded path is always shorter than MaxPath and
// re-encodes without error. Nothing else is checked: the caller judges the
// type, path and length in the context of its request.
func Unmarshal(b []byte) (Header, error) {
	if len(b) != HeaderSize {
		return Header{}, fmt.Errorf("decode header: got %d bytes, want %d", len(b), HeaderSize)
	}
	path := b[offPath : offPath+MaxPath-1]
	if i := bytes.IndexByte(path, 0); i >= 0 {
		path = path[:i]
	}
	return Header{
		Type:    MsgType(b[0]),
		Path:    string(path),
		DataLen: binary.NativeEndian.Uint32(b[offDataLen:]),
	}, nil
}

// ErrInvalidPath marks a path the daemon would refuse.
var ErrInvalidPath = errors.New("invalid QubesDB path")

// ValidatePath applies the daemon's own path check: shorter than MaxPath,
// only ASCII letters, digits and "-_/.:@", no leading '-'. It does not
// require the leading '/' that clients add on top (the daemon accepts "").
func ValidatePath(path string) error {
	if len(path) >= MaxPath {
		return fmt.Errorf("%w %q: %d bytes, must be under %d", ErrInvalidPath, path, len(path), MaxPath)
	}
	for i := 0; i < len(path); i++ {
		c := path[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '/', c == '.', c == ':', c == '@':
		case c == '-' && i > 0:
		default:
			return fmt.Errorf("%w %q: byte %q at offset %d not allowed", ErrInvalidPath, path, c, i)
		}
	}
	return nil
}
