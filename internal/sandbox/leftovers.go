package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// The prefixes of sandbox IDs, and so of every namespace and temporary
// directory a sandbox creates; the creating process's PID follows, so a
// sweep can tell a live run's sandboxes from those a dead run left behind.
// A kept sandbox (Options.Keep) has a prefix of its own, which
// RemoveLeftovers never sweeps.
const (
	namePrefix = "qnt"
	keptPrefix = "qnk"
)

var (
	leftoverName = regexp.MustCompile(`^` + namePrefix + `([0-9]+)x`)
	keptName     = regexp.MustCompile(`^` + keptPrefix + `([0-9]+)x`)
	// clientName is a client qube's namespace: its domid and devid, which
	// name its vif and so the NAT namespace vif-route-qubes may create.
	clientName = regexp.MustCompile(`-c([0-9]+)x([0-9]+)$`)
)

// RemoveLeftovers deletes what sandboxes of processes that no longer exist
// left: their namespaces (killing the processes in them), the NAT-mode
// namespace of each of their clients' vifs, and their temporary
// directories. A live process's sandboxes are never touched, so concurrent
// test binaries are safe; kept sandboxes are left to RemoveKept.
func RemoveLeftovers() error { return removeDead(leftoverName, namePrefix) }

// RemoveKept deletes, as RemoveLeftovers does, the kept sandboxes (see
// Options.Keep) whose creating process has exited.
func RemoveKept() error { return removeDead(keptName, keptPrefix) }

func removeDead(owned *regexp.Regexp, prefix string) error {
	names, err := NamespaceNames()
	if err != nil {
		return err
	}
	dead := func(name string) bool {
		m := owned.FindStringSubmatch(name)
		if m == nil {
			return false
		}
		pid, err := strconv.Atoi(m[1])
		return err == nil && !processExists(pid)
	}
	var errs []error
	for _, name := range names {
		if dead(name) {
			errs = append(errs, deleteOwnNamespace(name))
		}
	}
	dirs, err := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	errs = append(errs, err)
	for _, dir := range dirs {
		if dead(filepath.Base(dir)) {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove leftover %s: %w", dir, err))
			}
		}
	}
	return errors.Join(errs...)
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// NamespaceNames lists the namespaces `ip netns` knows.
func NamespaceNames() ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// deleteOwnNamespace deletes one of a sandbox's namespaces and, for a
// client's, the NAT-mode namespace vif-route-qubes may have created for its
// vif, which is named after the vif, not the sandbox.
func deleteOwnNamespace(name string) error {
	var err error
	if m := clientName.FindStringSubmatch(name); m != nil {
		if nat := "vif" + m[1] + "." + m[2] + "-nat"; namespaceExists(nat) {
			err = DeleteNamespace(nat)
		}
	}
	return errors.Join(err, DeleteNamespace(name))
}

// DeleteNamespace kills the processes inside the namespace (never this
// one: a thread of ours may be visiting it) and deletes it. A namespace
// someone else deleted meanwhile counts as deleted.
func DeleteNamespace(name string) error {
	out, err := run(nil, "ip", "netns", "pids", name)
	if err != nil && namespaceExists(name) {
		return err
	}
	for _, field := range strings.Fields(string(out)) {
		pid, err := strconv.Atoi(field)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("kill process %d in netns %s: %w", pid, name, err)
		}
	}
	if _, err := run(nil, "ip", "netns", "delete", name); err != nil && namespaceExists(name) {
		return err
	}
	return nil
}

func namespaceExists(name string) bool {
	_, err := os.Stat((&NS{Name: name}).Path())
	return err == nil
}
