// Package sysctl reads and writes kernel parameters under /proc/sys. It is
// the primitive both the hotplug tool (pkg/vif: proxy_arp, hardening) and
// its NAT mode (pkg/vif/natns, inside the NAT namespace) need; it lives
// here because natns cannot import its parent package.
//
// Keys are in slash form relative to /proc/sys
// ("net/ipv4/conf/vif3.0/proxy_arp"), because interface names contain dots.
package sysctl

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"syscall"
)

// ProcSys is the directory keys are relative to on a live system.
const ProcSys = "/proc/sys"

// Read returns the value of key with surrounding whitespace removed.
//
// The file is opened on each call because /proc/sys/net shows the network
// namespace of the thread that opens it: a caller that locked its thread into
// a namespace reads that namespace's value.
func Read(key string) (string, error) {
	file, err := keyPath(key)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read sysctl %s: %w", key, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Write sets key to value in the calling thread's network namespace (see
// Read). The value goes out in one write with a trailing newline, as
// systemd-sysctl writes it, so multi-field values are parsed as one.
func Write(key, value string) error {
	file, err := keyPath(key)
	if err != nil {
		return fmt.Errorf("write sysctl %s = %q: %w", key, value, err)
	}
	// No O_CREATE: a missing key must fail with ENOENT, not try to create.
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("write sysctl %s = %q: %w", key, value, err)
	}
	_, werr := f.Write([]byte(value + "\n"))
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("write sysctl %s = %q: %w", key, value, err)
	}
	return nil
}

// keyPath maps key to its file, refusing keys that would leave /proc/sys.
func keyPath(key string) (string, error) {
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return path.Join(ProcSys, key), nil
}

// CheckKey accepts a relative slash-form key without empty, "." or ".."
// components.
func CheckKey(key string) error {
	if key == "" {
		return errors.New("empty sysctl key")
	}
	for _, c := range strings.Split(key, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("bad sysctl key %q: want a relative path without empty, '.' or '..' components", key)
		}
	}
	return nil
}

// Skippable reports whether a failed read or write of a sysctl.d setting is
// one systemd-sysctl logs and skips instead of failing the run: the kernel
// lacks the key (ENOENT: a kernel booted with ipv6.disable=1 has no
// net/ipv6, one built without a feature lacks its keys) or this process may
// not change it (EPERM, EACCES, EROFS: read-only keys, a read-only /proc/sys,
// a namespace that does not own the key). Any other error is a real failure.
func Skippable(err error) bool {
	for _, errno := range []syscall.Errno{syscall.ENOENT, syscall.EPERM, syscall.EACCES, syscall.EROFS} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}
