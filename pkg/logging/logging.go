// Package logging builds the slog.Logger both binaries log with: every
// record goes to standard error (which Xen appends to its hotplug log) and
// to the system log, preferably the systemd journal with one field per
// attribute, else the syslog socket.
package logging

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"golang.org/x/sys/unix"
)

// Default socket paths of the systemd journal's native protocol and of
// syslog.
const (
	DefaultJournalSocket = "/run/systemd/journal/socket"
	DefaultSyslogSocket  = "/dev/log"
)

// Options says where records go and which are kept.
type Options struct {
	Tag           string     // SYSLOG_IDENTIFIER and stderr prefix; default: the program's base name
	Level         slog.Level // records below it are dropped everywhere
	Stderr        io.Writer  // always written; default os.Stderr
	JournalSocket string     // default DefaultJournalSocket
	SyslogSocket  string     // default DefaultSyslogSocket
}

// New returns a logger for opts and a function that closes its system log
// connection. The journal is used when its socket accepts a connection,
// else syslog when its socket does, else standard error alone.
//
// Logging never blocks or fails the program: a record the system log cannot
// take at once (full queue, oversized datagram, daemon gone) is dropped
// silently, and standard error write errors are ignored.
func New(opts Options) (*slog.Logger, func() error) {
	if opts.Tag == "" {
		opts.Tag = filepath.Base(os.Args[0])
	}
	if opts.Stderr == nil {
		opts.Stderr = os.Stderr
	}
	if opts.JournalSocket == "" {
		opts.JournalSocket = DefaultJournalSocket
	}
	if opts.SyslogSocket == "" {
		opts.SyslogSocket = DefaultSyslogSocket
	}
	o := &output{tag: opts.Tag, pid: os.Getpid(), stderr: opts.Stderr}
	if c, err := dialDatagram(opts.JournalSocket); err == nil {
		o.syslog, o.journal = c, true
	} else if c, err := dialDatagram(opts.SyslogSocket); err == nil {
		o.syslog = c
	}
	return slog.New(&handler{out: o, level: opts.Level}), o.close
}

func dialDatagram(path string) (*net.UnixConn, error) {
	return net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
}

// output is shared by a handler and every handler derived from it.
type output struct {
	tag    string
	pid    int
	mu     sync.Mutex
	stderr io.Writer
	syslog *net.UnixConn // journal or syslog socket; nil when neither or closed
	// journal says syslog speaks the journal's native protocol.
	journal bool
}

func (o *output) close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.syslog == nil {
		return nil
	}
	err := o.syslog.Close()
	o.syslog = nil
	if err != nil {
		return fmt.Errorf("close system log socket: %w", err)
	}
	return nil
}

// leaf is an attribute with the names of the groups it is in.
type leaf struct {
	path  []string
	value slog.Value
}

// handler writes each record through a slog.TextHandler of its own, which
// applies slog's attribute rules (resolving values, joining group names
// with '.', inlining groups with an empty key, dropping empty groups,
// quoting), and collects the attributes as leaves for the journal's
// fields on the way.
type handler struct {
	out   *output
	level slog.Level
	// derive replays the WithAttrs and WithGroup calls made on this
	// handler, in order, onto the record's TextHandler.
	derive []func(slog.Handler) slog.Handler
}

func (h *handler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *handler) WithAttrs(as []slog.Attr) slog.Handler {
	return h.with(func(th slog.Handler) slog.Handler { return th.WithAttrs(as) })
}

func (h *handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.with(func(th slog.Handler) slog.Handler { return th.WithGroup(name) })
}

func (h *handler) with(f func(slog.Handler) slog.Handler) *handler {
	c := *h
	c.derive = append(append([]func(slog.Handler) slog.Handler(nil), h.derive...), f)
	return &c
}

// render returns the record as "message key=value ..." and its attributes.
func (h *handler) render(r slog.Record) (string, []leaf) {
	var attrs bytes.Buffer
	var leaves []leaf
	// In Handle the TextHandler passes its built-in level and msg first;
	// the line has its own level and message.
	handling, builtins := false, 2
	th := slog.Handler(slog.NewTextHandler(&attrs, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if handling && builtins > 0 && len(groups) == 0 && (a.Key == slog.LevelKey || a.Key == slog.MessageKey) {
				builtins--
				return slog.Attr{}
			}
			if a.Key == "" {
				return slog.Attr{} // no name in any output
			}
			leaves = append(leaves, leaf{path: append(slices.Clip(groups), a.Key), value: a.Value})
			return a
		},
	}))
	for _, f := range h.derive {
		th = f(th)
	}
	handling = true
	r.Time = time.Time{}                   // a zero time is left out: journald and syslog stamp records themselves
	_ = th.Handle(context.Background(), r) // writes to a bytes.Buffer cannot fail
	text := r.Message
	if a := strings.TrimSuffix(attrs.String(), "\n"); a != "" {
		text += " " + a
	}
	return text, leaves
}

func (h *handler) Handle(_ context.Context, r slog.Record) error {
	text, leaves := h.render(r)
	line := fmt.Sprintf("%s: %s: %s\n", h.out.tag, strings.ToLower(r.Level.String()), oneLine(text))

	var datagram []byte
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	switch {
	case h.out.syslog == nil:
	case h.out.journal:
		datagram = journalRecord(h.out.tag, r.Level, text, leaves)
	default:
		datagram = fmt.Appendf(nil, "<%d>%s[%d]: %s", facilityDaemon|severity(r.Level), h.out.tag, h.out.pid, oneLine(text))
	}
	_, _ = io.WriteString(h.out.stderr, line)
	if datagram != nil {
		sendNow(h.out.syslog, datagram)
	}
	return nil
}

// sendNow makes one non-blocking attempt to send b and drops it on any
// error: a stuck log daemon must not stall network configuration.
func sendNow(c *net.UnixConn, b []byte) {
	raw, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = raw.Write(func(fd uintptr) bool {
		_, _ = unix.Write(int(fd), b)
		return true // done whatever happened: never wait for the socket
	})
}

// oneLine keeps a multi-line message (say, joined errors) on the single
// line a stderr or syslog record has; the journal keeps the line breaks.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// Syslog facility and severities (RFC 3164 / RFC 5424).
const (
	facilityDaemon = 3 << 3
	sevErr         = 3
	sevWarning     = 4
	sevInfo        = 6
	sevDebug       = 7
)

func severity(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return sevErr
	case l >= slog.LevelWarn:
		return sevWarning
	case l >= slog.LevelInfo:
		return sevInfo
	default:
		return sevDebug
	}
}

// journalRecord encodes a record in the journal's native protocol: one
// field per line as NAME=value, or, for a value holding a newline, NAME, a
// newline, the value's length as a little-endian uint64, the value and a
// newline.
func journalRecord(tag string, l slog.Level, text string, leaves []leaf) []byte {
	var b []byte
	b = appendJournalField(b, "MESSAGE", text)
	b = appendJournalField(b, "PRIORITY", strconv.Itoa(severity(l)))
	b = appendJournalField(b, "SYSLOG_IDENTIFIER", tag)
	for _, lf := range leaves {
		b = appendJournalField(b, journalFieldName(lf.path), lf.value.String())
	}
	return b
}

func appendJournalField(b []byte, name, value string) []byte {
	b = append(b, name...)
	if !strings.Contains(value, "\n") {
		b = append(b, '=')
		b = append(b, value...)
		return append(b, '\n')
	}
	b = append(b, '\n')
	b = binary.LittleEndian.AppendUint64(b, uint64(len(value)))
	b = append(b, value...)
	return append(b, '\n')
}

// maxJournalFieldName is journald's limit on field name length.
const maxJournalFieldName = 64

// journalFieldName turns an attribute's group path into a name journald
// accepts: upper case, groups joined by '_', other characters outside
// [A-Z0-9_] replaced by '_', no leading '_' (those fields are journald's
// own, trusted ones), no leading digit, at most 64 bytes.
func journalFieldName(path []string) string {
	name := strings.Map(func(r rune) rune {
		r = unicode.ToUpper(r)
		if (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9') {
			return r
		}
		return '_'
	}, strings.Join(path, "_"))
	name = strings.TrimLeft(name, "_")
	if name == "" || (name[0] >= '0' && name[0] <= '9') {
		name = "ATTR_" + name
	}
	if len(name) > maxJournalFieldName {
		name = name[:maxJournalFieldName]
	}
	return name
}
