package vif

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/qubes-netvm/qnet/internal/sysctl"
)

// Assignment is one effective line of a sysctl.d file.
type Assignment struct {
	Key           string // slash form, relative to /proc/sys; may hold glob characters
	Value         string // empty for an exclusion
	IgnoreFailure bool   // the line started with '-': a failed write is not an error
	// Exclude marks a "-key" line without '=': it sets nothing and only keeps
	// glob assignments away from the keys it names (systemd's negative match).
	Exclude bool
}

// maxLineLen is systemd's LONG_LINE_MAX: a longer line makes systemd-sysctl
// give up on the whole file.
const maxLineLen = 1 << 20

// whitespace is what systemd's strstrip removes from both ends.
const whitespace = " \t\n\r"

// globChars are the characters that make systemd treat a key as a glob.
const globChars = "*?["

// ParseConf reads a file in sysctl.d syntax the way systemd-sysctl does:
//   - lines end at '\n', '\r', "\r\n" or NUL; each line is stripped of
//     surrounding whitespace; empty lines and lines starting with '#' or ';'
//     are comments;
//   - "key = value" assigns (whitespace around key and value removed); a
//     leading '-' on the key means a failed write is ignored;
//   - "-key" without '=' is an exclusion (see Assignment.Exclude);
//   - keys are normalized as described at normalizeKey;
//   - a later assignment of the same key with a different value replaces the
//     earlier one and moves to the later position; with the same value the
//     earlier one stays where it is and keeps IgnoreFailure if either line
//     had it.
//
// A line without '=' and without a leading '-' is skipped, as systemd skips
// it with a warning; so are, unlike systemd, a key that normalizes to nothing
// or holds a ".." component (systemd would write outside /proc/sys) and a
// malformed glob (glob(3) would take it literally and match nothing). Each
// skipped line yields an error naming name:line and the text; ParseConf then
// returns every valid assignment together with the joined errors, as
// systemd-sysctl applies the rest of the file and still exits with failure.
// A read error or an overlong line returns no assignments.
func ParseConf(r io.Reader, name string) ([]Assignment, error) {
	var (
		order   []*Assignment // nil entries were replaced by a later line
		index   = map[string]int{}
		badLine []error
	)
	lines := newLineReader(r)
	for n := 1; ; n++ {
		raw, err := lines.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, n, err)
		}
		line := strings.Trim(raw, whitespace)
		if line == "" || strings.ContainsRune("#;", rune(line[0])) {
			continue
		}
		a, err := parseLine(line)
		if err != nil {
			badLine = append(badLine, fmt.Errorf("%s:%d: %w: %q", name, n, err, line))
			continue
		}
		if i, ok := index[a.Key]; ok {
			old := order[i]
			if old.Exclude == a.Exclude && old.Value == a.Value {
				old.IgnoreFailure = old.IgnoreFailure || a.IgnoreFailure
				continue
			}
			order[i] = nil
		}
		index[a.Key] = len(order)
		order = append(order, &a)
	}
	var out []Assignment
	for _, a := range order {
		if a != nil {
			out = append(out, *a)
		}
	}
	return out, errors.Join(badLine...)
}

// parseLine parses a stripped, non-comment line.
func parseLine(line string) (Assignment, error) {
	var a Assignment
	key, value, isAssignment := strings.Cut(line, "=")
	switch {
	case isAssignment:
		a.Value = strings.Trim(value, whitespace)
		if strings.HasPrefix(key, "-") {
			a.IgnoreFailure = true
			key = key[1:]
		}
	case strings.HasPrefix(key, "-"):
		a.Exclude = true
		key = key[1:]
	default:
		return a, errors.New("not an assignment")
	}
	a.Key = normalizeKey(strings.Trim(key, whitespace))
	if err := sysctl.CheckKey(a.Key); err != nil {
		return a, err
	}
	if strings.ContainsAny(a.Key, globChars) {
		if _, err := path.Match(a.Key, ""); err != nil {
			return a, fmt.Errorf("malformed glob %q", a.Key)
		}
	}
	return a, nil
}

// normalizeKey turns a sysctl key into slash form as systemd's
// sysctl_normalize does. When the first separator in the key is '.', the
// key is in dotted form: every '.' becomes '/' and every '/' becomes '.', so
// "net.ipv4.conf.vif3/0.forwarding" names net/ipv4/conf/vif3.0/forwarding.
// When the first separator is '/', the key is already in slash form and its
// dots stay (they belong to interface names). Then empty and "." components
// are dropped, which also removes a leading slash.
//
// Glob characters are not touched: "net.ipv4.conf.*.accept_redirects"
// becomes the pattern net/ipv4/conf/*/accept_redirects, whose '*' is matched
// against one directory name under /proc/sys and so matches "vif3.0" whole.
// A dotted key cannot name a dotted interface with '.', only with '/'.
func normalizeKey(key string) string {
	if i := strings.IndexAny(key, "/."); i >= 0 && key[i] == '.' {
		key = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, key)
	}
	var parts []string
	for _, c := range strings.Split(key, "/") {
		if c != "" && c != "." {
			parts = append(parts, c)
		}
	}
	return strings.Join(parts, "/")
}

// lineReader splits input into lines as systemd's read_line does: a line
// ends at a run of end-of-line bytes in which '\n' and '\r' each occur at
// most once (so "\r\n" and "\n\r" end one line, "\n\n" two), and a NUL ends
// the run.
type lineReader struct {
	r *bufio.Reader
}

func newLineReader(r io.Reader) *lineReader { return &lineReader{r: bufio.NewReader(r)} }

// next returns the next line without its terminator, or io.EOF when the
// input is exhausted.
func (l *lineReader) next() (string, error) {
	var line []byte
	for {
		b, err := l.r.ReadByte()
		if err == io.EOF {
			if line == nil {
				return "", io.EOF
			}
			return string(line), nil
		}
		if err != nil {
			return "", err
		}
		if b == '\n' || b == '\r' || b == 0 {
			return string(line), l.skipTerminator(b)
		}
		if len(line) == maxLineLen {
			return "", fmt.Errorf("line longer than %d bytes", maxLineLen)
		}
		line = append(line, b)
	}
}

// skipTerminator consumes the rest of the end-of-line run begun by first.
func (l *lineReader) skipTerminator(first byte) error {
	seen := map[byte]bool{first: true}
	for !seen[0] {
		b, err := l.r.ReadByte()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if (b != '\n' && b != '\r' && b != 0) || seen[b] {
			return l.r.UnreadByte()
		}
		seen[b] = true
	}
	return nil
}
