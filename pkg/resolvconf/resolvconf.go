// Package resolvconf reads the IPv4 name servers of a resolv.conf file,
// accepting exactly the lines upstream's qubes-setup-dnat-to-ns accepts.
//
// A line counts when its first whitespace-separated field is "nameserver"
// and its second field is an IPv4 address in strict dotted-decimal form
// (four decimal octets, no leading zeros, no zone); anything after the
// second field is ignored, as upstream does. Every other line is skipped:
// comments, IPv6 addresses, zone ids, "1.2.3.4;" with trailing punctuation.
//
// Two deliberate differences from upstream's Python, both on lines no
// resolver writes: a line longer than MaxLineLen bytes is skipped whole (as
// musl's resolver does) instead of being split, and a line that is not valid
// UTF-8 is skipped instead of aborting the whole run with a decode error.
package resolvconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"unicode"
	"unicode/utf8"
)

// MaxLineLen is the longest line, in bytes without its terminator, that is
// considered at all.
const MaxLineLen = 4096

// ReadFile returns the name servers of the resolv.conf at path, in file
// order. A file that does not exist yields no servers and no error, as
// upstream treats it: the caller then installs drop rules.
func ReadFile(path string) ([]netip.Addr, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	servers, err := Parse(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return servers, nil
}

// Parse returns the name servers in r, in order. It fails only when r does.
func Parse(r io.Reader) ([]netip.Addr, error) {
	var servers []netip.Addr
	lines := newLineReader(r)
	for {
		line, err := lines.next()
		if line != nil {
			if addr, ok := ParseLine(line); ok {
				servers = append(servers, addr)
			}
		}
		if errors.Is(err, io.EOF) {
			return servers, nil
		}
		if err != nil {
			return servers, err
		}
	}
}

// ParseLine returns the name server a single line (without its terminator)
// declares, if it declares one.
func ParseLine(line []byte) (netip.Addr, bool) {
	if len(line) > MaxLineLen || !utf8.Valid(line) {
		return netip.Addr{}, false
	}
	keyword, rest := nextField(line)
	if string(keyword) != "nameserver" {
		return netip.Addr{}, false
	}
	value, _ := nextField(rest)
	addr, err := netip.ParseAddr(string(value))
	if err != nil || !addr.Is4() {
		return netip.Addr{}, false
	}
	return addr, true
}

// isSpace reports whether Python's str.isspace holds for r, which is what
// upstream's line.split() splits on: Go's unicode.IsSpace plus the four
// ASCII information separators U+001C..U+001F.
func isSpace(r rune) bool {
	return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f)
}

// nextField returns the first field of s and what follows it.
func nextField(s []byte) (field, rest []byte) {
	start := bytes.IndexFunc(s, func(r rune) bool { return !isSpace(r) })
	if start < 0 {
		return nil, nil
	}
	s = s[start:]
	end := bytes.IndexFunc(s, isSpace)
	if end < 0 {
		return s, nil
	}
	return s[:end], s[end:]
}

// lineReader splits input the way Python's text mode does with universal
// newlines (a line ends at "\n", "\r\n" or a lone "\r"), and reports a line
// longer than MaxLineLen as one over-long line without holding it in memory.
type lineReader struct {
	r    *bufio.Reader
	line []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{r: bufio.NewReaderSize(r, MaxLineLen+2)}
}

// next returns the next line; an over-long one comes back truncated to
// MaxLineLen+1 bytes so that ParseLine rejects it. It returns io.EOF with
// the last line, or with a nil line when the input ended with a terminator.
func (l *lineReader) next() ([]byte, error) {
	l.line = l.line[:0]
	for {
		b, err := l.r.ReadByte()
		if err != nil {
			if len(l.line) == 0 {
				return nil, err
			}
			return l.line, err
		}
		switch b {
		case '\n':
			return l.line, nil
		case '\r':
			if next, err := l.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = l.r.ReadByte()
			}
			return l.line, nil
		}
		if len(l.line) <= MaxLineLen {
			l.line = append(l.line, b)
		}
	}
}
