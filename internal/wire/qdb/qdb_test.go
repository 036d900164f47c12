package qdb_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/wire/qdb"
)

// knownHeader is RESP_READ for "/ab" with data_len 0x01020304, written out
// by hand: type at 0, path at 1 NUL-padded to 64 bytes, 3 pad bytes, then
// data_len little-endian at 68.
var knownHeader = []byte{
	0x0a, '/', 'a', 'b', 0, 0, 0, 0, // 0..7: type, path starts at 1
	0, 0, 0, 0, 0, 0, 0, 0, // 8..15
	0, 0, 0, 0, 0, 0, 0, 0, // 16..23
	0, 0, 0, 0, 0, 0, 0, 0, // 24..31
	0, 0, 0, 0, 0, 0, 0, 0, // 32..39
	0, 0, 0, 0, 0, 0, 0, 0, // 40..47
	0, 0, 0, 0, 0, 0, 0, 0, // 48..55
	0, 0, 0, 0, 0, 0, 0, 0, // 56..63
	0, 0, 0, 0, 0x04, 0x03, 0x02, 0x01, // 64: last path byte, 65..67 pad, 68..71 data_len
}

func TestHeaderLayout(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the hand-written header is little-endian; this host is big-endian")
	}
	if len(knownHeader) != qdb.HeaderSize {
		t.Fatalf("literal is %d bytes, want %d", len(knownHeader), qdb.HeaderSize)
	}
	want := qdb.Header{Type: qdb.RespRead, Path: "/ab", DataLen: 0x01020304}
	got, err := qdb.Marshal(want)
	if err != nil {
		t.Fatalf("Marshal(%+v): %v", want, err)
	}
	if !bytes.Equal(got, knownHeader) {
		t.Errorf("Marshal(%+v) =\n% x\nwant\n% x", want, got, knownHeader)
	}
	back, err := qdb.Unmarshal(knownHeader)
	if err != nil || back != want {
		t.Errorf("Unmarshal(literal) = %+v, %v; want %+v", back, err, want)
	}
}

func TestUnmarshal(t *testing.T) {
	// What the C client sends: garbage after the path's NUL and in the pad.
	dirty := bytes.Clone(knownHeader)
	copy(dirty[5:], "garbage")
	copy(dirty[65:], []byte{0xb2, 0x1d, 0x27})
	// A path field with no NUL at all: the daemon forces the last byte to NUL.
	unterminated := bytes.Clone(knownHeader)
	for i := 1; i <= qdb.MaxPath; i++ {
		unterminated[i] = 'x'
	}

	tests := []struct {
		name    string
		in      []byte
		want    qdb.Header
		wantErr bool
	}{
		{name: "garbage after NUL and in padding", in: dirty, want: qdb.Header{Type: qdb.RespRead, Path: "/ab", DataLen: 0x01020304}},
		{name: "unterminated path cut to 63 bytes", in: unterminated, want: qdb.Header{Type: qdb.RespRead, Path: strings.Repeat("x", qdb.MaxPath-1), DataLen: 0x01020304}},
		{name: "short", in: knownHeader[:71], wantErr: true},
		{name: "long", in: append(bytes.Clone(knownHeader), 0), wantErr: true},
		{name: "empty", in: nil, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := qdb.Unmarshal(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Unmarshal(%d bytes) = %+v, want an error", len(tt.in), got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Unmarshal = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestMarshalRefuses(t *testing.T) {
	for _, path := range []string{strings.Repeat("a", qdb.MaxPath), "/a\x00b"} {
		if b, err := qdb.Marshal(qdb.Header{Path: path}); err == nil {
			t.Errorf("Marshal(path %q) = % x, want an error", path, b)
		} else if !strings.Contains(err.Error(), path[:2]) {
			t.Errorf("Marshal(path %q) error %q does not name the path", path, err)
		}
	}
}

func TestValidatePath(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/qubes-netvm-gateway", true},
		{"/mapped-ip/10.137.0.5/visible-ip", true},
		{"/a_b:c@d.e/", true},
		{"", true},
		{"/" + strings.Repeat("a", qdb.MaxPath-2), true},
		{"/" + strings.Repeat("a", qdb.MaxPath-1), false},
		{"-leading-dash", false},
		{"/a b", false},
		{"/a\x00", false},
		{"/é", false},
		{"/a*", false},
	}
	for _, tt := range tests {
		err := qdb.ValidatePath(tt.path)
		if (err == nil) != tt.ok {
			t.Errorf("ValidatePath(%q) = %v, want ok=%v", tt.path, err, tt.ok)
		}
		if err != nil && !errors.Is(err, qdb.ErrInvalidPath) {
			t.Errorf("ValidatePath(%q) = %v, does not wrap ErrInvalidPath", tt.path, err)
		}
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(knownHeader)
	f.Add(make([]byte, qdb.HeaderSize))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := qdb.Unmarshal(b)
		if len(b) != qdb.HeaderSize {
			if err == nil {
				t.Fatalf("Unmarshal accepted %d bytes", len(b))
			}
			return
		}
		if err != nil {
			t.Fatalf("Unmarshal(%d bytes): %v", len(b), err)
		}
		if h.Type != qdb.MsgType(b[0]) || h.DataLen != binary.NativeEndian.Uint32(b[68:]) {
			t.Fatalf("Unmarshal = %+v, disagrees with bytes % x", h, b)
		}
		// Every decoded header re-encodes and decodes to itself.
		again, err := qdb.Marshal(h)
		if err != nil {
			t.Fatalf("Marshal(%+v) of a decoded header: %v", h, err)
		}
		if h2, err := qdb.Unmarshal(again); err != nil || h2 != h {
			t.Fatalf("round trip %+v -> %+v, %v", h, h2, err)
		}
	})
}
