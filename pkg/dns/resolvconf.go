// resolv.conf: which name-server lines count, accepting exactly the IPv4
// lines upstream's qubes-setup-dnat-to-ns accepts, and IPv6 lines for the
// IPv6 virtual DNS addresses upstream does not have.
//
// A line counts when its first whitespace-separated field is "nameserver"
// and its second field is an IPv4 address in strict dotted-decimal form
// (four decimal octets, no leading zeros, no zone), or an IPv6 address;
// anything after the second field is ignored, as upstream does. Every other
// line is skipped: comments, IPv4-mapped IPv6 addresses, "1.2.3.4;" with
// trailing punctuation. An IPv6 server with a zone or a link-local address
// is reported apart: it cannot be a DNAT target.
//
// Two deliberate differences from upstream's Python, both on lines no
// resolver writes: a line longer than MaxResolvConfLine bytes is skipped whole (as
// musl's resolver does) instead of being split, and a line that is not valid
// UTF-8 is skipped instead of aborting the whole run with a decode error.

package dns

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

// MaxResolvConfLine is the longest line, in bytes without its terminator, that is
// considered at all.
const MaxResolvConfLine = 4096

// ResolvConfServers are the name servers of a file, in file order, by family.
type ResolvConfServers struct {
	IPv4, IPv6 []netip.Addr
	// Scoped are IPv6 servers that only mean something on one link
	// (link-local, or written with a zone), zone kept.
	Scoped []netip.Addr
}

// ReadResolvConf returns the name servers of the resolv.conf at path. A file that
// does not exist yields no servers and no error, as upstream treats it: the
// caller then installs drop rules.
func ReadResolvConf(path string) (ResolvConfServers, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ResolvConfServers{}, nil
	}
	if err != nil {
		return ResolvConfServers{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	servers, err := ParseResolvConfServers(f)
	if err != nil {
		return ResolvConfServers{}, fmt.Errorf("read %s: %w", path, err)
	}
	return servers, nil
}

// ParseResolvConfServers returns the name servers in r of both families. It fails
// only when r does.
func ParseResolvConfServers(r io.Reader) (ResolvConfServers, error) {
	var servers ResolvConfServers
	lines := bufio.NewScanner(r)
	lines.Buffer(make([]byte, 0, 512), MaxResolvConfLine+2)
	lines.Split(universalLines())
	for lines.Scan() {
		addr, ok := parseServer(lines.Bytes())
		switch {
		case !ok:
		case addr.Is4():
			servers.IPv4 = append(servers.IPv4, addr)
		case addr.Zone() != "" || addr.IsLinkLocalUnicast():
			servers.Scoped = append(servers.Scoped, addr)
		default:
			servers.IPv6 = append(servers.IPv6, addr)
		}
	}
	return servers, lines.Err()
}

// parseServer returns the server a line declares: a strict IPv4 address or
// an IPv6 one that is not IPv4-mapped (zones kept).
func parseServer(line []byte) (netip.Addr, bool) {
	if len(line) > MaxResolvConfLine || !utf8.Valid(line) {
		return netip.Addr{}, false
	}
	keyword, rest := nextField(line)
	if string(keyword) != "nameserver" {
		return netip.Addr{}, false
	}
	value, _ := nextField(rest)
	addr, err := netip.ParseAddr(string(value))
	if err != nil || addr.Is4In6() {
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

// universalLines returns a bufio.SplitFunc that ends a line the way
// Python's text mode does with universal newlines (at "\n", "\r\n" or a
// lone "\r") and skips a line longer than MaxResolvConfLine whole, without
// holding it in memory: the scanner's buffer never needs more than
// MaxResolvConfLine+2 bytes.
func universalLines() bufio.SplitFunc {
	skipping := false // inside an over-long line, until its terminator
	return func(data []byte, atEOF bool) (int, []byte, error) {
		if len(data) == 0 {
			return 0, nil, nil
		}
		i := bytes.IndexAny(data, "\r\n")
		if i < 0 {
			switch {
			case skipping || len(data) > MaxResolvConfLine:
				skipping = !atEOF
				return len(data), nil, nil
			case atEOF:
				return len(data), data, nil // the last line, unterminated
			}
			return 0, nil, nil
		}
		if i > MaxResolvConfLine {
			// Drop the text now, while the buffer may be full; the
			// terminator is dealt with on the next call.
			skipping = true
			return i, nil, nil
		}
		end := i + 1
		if data[i] == '\r' {
			if end == len(data) && !atEOF {
				return 0, nil, nil // a "\n" may follow
			}
			if end < len(data) && data[end] == '\n' {
				end++
			}
		}
		if skipping {
			skipping = false
			return end, nil, nil
		}
		return end, data[:i], nil
	}
}
