package logging

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type field struct{ name, value string }

// listen opens a datagram socket at a fresh path, standing in for the
// journal or syslog daemon.
func listen(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	// Socket paths are limited to 108 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "qnt-log")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// receive returns the next datagram, failing the test if none arrives
// within a generous deadline.
func receive(t *testing.T, c *net.UnixConn) []byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1<<16)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no datagram: %v", err)
	}
	return buf[:n]
}

// parseJournal decodes the journal's native protocol, independently of
// the encoder under test.
func parseJournal(t *testing.T, b []byte) []field {
	t.Helper()
	var fields []field
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("unterminated field %q", b)
		}
		line := string(b[:nl])
		b = b[nl+1:]
		if name, value, ok := strings.Cut(line, "="); ok {
			fields = append(fields, field{name, value})
			continue
		}
		if len(b) < 8 {
			t.Fatalf("binary field %s without length", line)
		}
		n := binary.LittleEndian.Uint64(b)
		b = b[8:]
		if uint64(len(b)) < n+1 || b[n] != '\n' {
			t.Fatalf("binary field %s: bad length %d for %q", line, n, b)
		}
		fields = append(fields, field{line, string(b[:n])})
		b = b[n+1:]
	}
	return fields
}

func noSocket(t *testing.T) string { return filepath.Join(t.TempDir(), "absent") }

func TestJournal(t *testing.T) {
	journal, daemon := listen(t)
	var stderr bytes.Buffer
	log, closeLog := New(Options{Tag: "vif-route-qubes", Stderr: &stderr,
		JournalSocket: journal, SyslogSocket: noSocket(t)})
	defer closeLog()

	log.With("vif", "vif3.0").WithGroup("route").Info("route added", "domid", 3, "addr", "10.137.0.5",
		slog.Group("via", "dev", "vif3.0"), "weird-key.x", "a b")
	got := parseJournal(t, receive(t, daemon))
	want := []field{
		{"MESSAGE", `route added vif=vif3.0 route.domid=3 route.addr=10.137.0.5 route.via.dev=vif3.0 route.weird-key.x="a b"`},
		{"PRIORITY", "6"},
		{"SYSLOG_IDENTIFIER", "vif-route-qubes"},
		{"VIF", "vif3.0"},
		{"ROUTE_DOMID", "3"},
		{"ROUTE_ADDR", "10.137.0.5"},
		{"ROUTE_VIA_DEV", "vif3.0"},
		{"ROUTE_WEIRD_KEY_X", "a b"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("journal fields:\n got  %q\n want %q", got, want)
	}
}

func TestJournalMultiline(t *testing.T) {
	journal, daemon := listen(t)
	var stderr bytes.Buffer
	log, closeLog := New(Options{Tag: "t", Stderr: &stderr, JournalSocket: journal, SyslogSocket: noSocket(t)})
	defer closeLog()

	log.Error("undo failed:\nroute gone", "err", errors.New("one\ntwo"))
	raw := receive(t, daemon)
	msg := "undo failed:\nroute gone err=\"one\\ntwo\""
	wantRaw := append([]byte("MESSAGE\n"), binary.LittleEndian.AppendUint64(nil, uint64(len(msg)))...)
	wantRaw = append(wantRaw, msg+"\n"...)
	if !bytes.HasPrefix(raw, wantRaw) {
		t.Errorf("datagram starts %q, want %q", raw, wantRaw)
	}
	got := parseJournal(t, raw)
	want := []field{{"MESSAGE", msg}, {"PRIORITY", "3"}, {"SYSLOG_IDENTIFIER", "t"}, {"ERR", "one\ntwo"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("journal fields:\n got  %q\n want %q", got, want)
	}
	if want := "t: error: undo failed:; route gone err=\"one\\ntwo\"\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
}

func TestJournalFieldName(t *testing.T) {
	tests := []struct {
		path []string
		want string
	}{
		{[]string{"vif"}, "VIF"},
		{[]string{"domid"}, "DOMID"},
		{[]string{"route", "metric"}, "ROUTE_METRIC"},
		{[]string{"a-b.c d"}, "A_B_C_D"},
		{[]string{"_private"}, "PRIVATE"},
		{[]string{"__"}, "ATTR_"},
		{[]string{"9lives"}, "ATTR_9LIVES"},
		{[]string{"ümlaut"}, "MLAUT"},
		{[]string{strings.Repeat("k", 70)}, strings.Repeat("K", 64)},
	}
	for _, tt := range tests {
		if got := journalFieldName(tt.path); got != tt.want {
			t.Errorf("journalFieldName(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestSyslogFallback(t *testing.T) {
	// A journal socket file nobody listens on (a stopped journald) must not
	// swallow records: syslog takes them.
	stale, staleConn := listen(t)
	staleConn.Close()

	for name, journal := range map[string]string{"no journal socket": noSocket(t), "stale journal socket": stale} {
		t.Run(name, func(t *testing.T) {
			syslog, daemon := listen(t)
			var stderr bytes.Buffer
			log, closeLog := New(Options{Tag: "vif-route-qubes", Stderr: &stderr, JournalSocket: journal, SyslogSocket: syslog})
			defer closeLog()

			log.Warn("bad mac address", "mac", "AA:BB", "vif", "vif3.0")
			want := fmt.Sprintf("<28>vif-route-qubes[%d]: bad mac address mac=AA:BB vif=vif3.0", os.Getpid())
			if got := string(receive(t, daemon)); got != want {
				t.Errorf("syslog datagram = %q, want %q", got, want)
			}
		})
	}
}

func TestStderr(t *testing.T) {
	var stderr bytes.Buffer
	log, closeLog := New(Options{Tag: "qubes-setup-dnat-to-ns", Stderr: &stderr,
		JournalSocket: noSocket(t), SyslogSocket: noSocket(t)})
	defer closeLog()

	log.Info("chain replaced", "rules", 4)
	log.With("server", "10.139.1.1").Warn("no upstream", "reason", "resolved: not running", "empty", "")
	log.Error("failed", slog.Group("g", "k", `q"uote`, "eq", "a=b"))
	log.Debug("hidden at info level")
	want := "qubes-setup-dnat-to-ns: info: chain replaced rules=4\n" +
		"qubes-setup-dnat-to-ns: warn: no upstream server=10.139.1.1 reason=\"resolved: not running\" empty=\"\"\n" +
		"qubes-setup-dnat-to-ns: error: failed g.k=\"q\\\"uote\" g.eq=\"a=b\"\n"
	if stderr.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
	if err := closeLog(); err != nil {
		t.Errorf("close without a system log: %v", err)
	}
}

func TestLevel(t *testing.T) {
	for _, tt := range []struct {
		level     slog.Level
		wantFirst string // the first record that reaches both outputs
	}{
		{slog.LevelInfo, "shown"},
		{slog.LevelDebug, "detail"},
	} {
		t.Run(tt.level.String(), func(t *testing.T) {
			journal, daemon := listen(t)
			var stderr bytes.Buffer
			log, closeLog := New(Options{Tag: "t", Level: tt.level, Stderr: &stderr, JournalSocket: journal, SyslogSocket: noSocket(t)})
			defer closeLog()

			log.Debug("detail")
			log.Info("shown")
			if got := parseJournal(t, receive(t, daemon))[0]; got != (field{"MESSAGE", tt.wantFirst}) {
				t.Errorf("first journal record %q, want MESSAGE=%s", got, tt.wantFirst)
			}
			if first, _, _ := strings.Cut(stderr.String(), "\n"); !strings.HasSuffix(first, ": "+tt.wantFirst) {
				t.Errorf("first stderr line %q, want message %q", first, tt.wantFirst)
			}
		})
	}
}

// TestNeverBlocks logs far more records than a datagram socket queues while
// the daemon reads nothing; the records beyond the queue are dropped, and
// closing twice is harmless. If sending blocked, the test would hang.
func TestNeverBlocks(t *testing.T) {
	journal, _ := listen(t)
	var stderr bytes.Buffer
	log, closeLog := New(Options{Tag: "t", Stderr: &stderr, JournalSocket: journal, SyslogSocket: noSocket(t)})
	const n = 5000
	for i := range n {
		log.Info("flood", "i", i)
	}
	if got := strings.Count(stderr.String(), "\n"); got != n {
		t.Errorf("stderr got %d lines, want %d", got, n)
	}
	if err := closeLog(); err != nil {
		t.Errorf("close: %v", err)
	}
	log.Info("after close")
	if err := closeLog(); err != nil {
		t.Errorf("second close: %v", err)
	}
	if !strings.HasSuffix(stderr.String(), "t: info: after close\n") {
		t.Errorf("stderr lost a record logged after close")
	}
}

// TestBuiltinKeysAsAttributes: attributes named like slog's built-in keys
// are the caller's and are kept.
func TestBuiltinKeysAsAttributes(t *testing.T) {
	var stderr bytes.Buffer
	log, closeLog := New(Options{Tag: "t", Stderr: &stderr, JournalSocket: noSocket(t), SyslogSocket: noSocket(t)})
	defer closeLog()

	log.With("level", "debug").Info("m", "msg", "x", "", "dropped", "time", "now")
	if want := "t: info: m level=debug msg=x time=now\n"; stderr.String() != want {
		t.Errorf("stderr = %q, want %q", stderr.String(), want)
	}
}
