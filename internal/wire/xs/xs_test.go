package xs

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestReadMsg(t *testing.T) {
	read := Header{Type: Read, ReqID: 7, TxID: 3, Len: 2}
	tests := []struct {
		name        string
		stream      []byte
		wantHeader  Header
		wantPayload string
		wantErr     error
	}{
		{"whole message", append(read.Append(nil), "ab"...), read, "ab", nil},
		{"empty stream", nil, Header{}, "", io.EOF},
		{"short header", read.Append(nil)[:9], Header{}, "", io.ErrUnexpectedEOF},
		{"short payload", append(read.Append(nil), 'a'), Header{}, "", io.ErrUnexpectedEOF},
		{"no payload at all", read.Append(nil), Header{}, "", io.ErrUnexpectedEOF},
		{"largest payload", append(Header{Len: PayloadMax}.Append(nil), make([]byte, PayloadMax)...), Header{Len: PayloadMax}, string(make([]byte, PayloadMax)), nil},
		{"oversize payload", Header{Len: PayloadMax + 1}.Append(nil), Header{}, "", ErrPayloadTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, payload, err := ReadMsg(bytes.NewReader(tt.stream))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadMsg error %v, want %v", err, tt.wantErr)
			}
			if h != tt.wantHeader || string(payload) != tt.wantPayload {
				t.Errorf("ReadMsg = %+v %q, want %+v %q", h, payload, tt.wantHeader, tt.wantPayload)
			}
		})
	}
}

func TestWriteMsg(t *testing.T) {
	var buf bytes.Buffer
	// Len in the given header is ignored: the payload decides.
	if err := WriteMsg(&buf, Header{Type: Write, ReqID: 1, Len: 99}, []byte("p\x00v")); err != nil {
		t.Fatal(err)
	}
	want := append(Header{Type: Write, ReqID: 1, Len: 3}.Append(nil), "p\x00v"...)
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("wrote % x, want % x", buf.Bytes(), want)
	}
	if err := WriteMsg(&buf, Header{Type: Write}, make([]byte, PayloadMax+1)); !errors.Is(err, ErrPayloadTooLarge) {
		t.Errorf("oversize WriteMsg: %v, want ErrPayloadTooLarge", err)
	}
}

func TestErrno(t *testing.T) {
	if _, ok := Errno("ENOTANERROR"); ok {
		t.Error("unknown name mapped")
	}
	if len(errnos) != 16 {
		t.Errorf("%d error names, Xen's xsd_errors has 16", len(errnos))
	}
}

// FuzzDecodeHeader checks that any input either decodes to a header that
// encodes back to the same bytes or is refused, and that reading a
// message from it never panics or returns a payload of the wrong size.
func FuzzDecodeHeader(f *testing.F) {
	f.Add(Header{Type: Read, ReqID: 1, Len: 5}.Append(nil))
	f.Add(Header{Type: Error, Len: PayloadMax + 1}.Append(nil))
	f.Add([]byte("short"))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHeader(data)
		if err == nil {
			if h.Len > PayloadMax {
				t.Fatalf("accepted Len %d", h.Len)
			}
			if !bytes.Equal(h.Append(nil), data) {
				t.Fatalf("%+v re-encodes to % x, not % x", h, h.Append(nil), data)
			}
		} else if len(data) == HeaderSize && !errors.Is(err, ErrPayloadTooLarge) {
			t.Fatalf("refused a %d-byte header: %v", HeaderSize, err)
		}
		if h, payload, err := ReadMsg(bytes.NewReader(data)); err == nil && uint32(len(payload)) != h.Len {
			t.Fatalf("payload of %d bytes for Len %d", len(payload), h.Len)
		}
	})
}
