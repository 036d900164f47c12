package sandbox

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
)

// namePrefix starts every namespace a sandbox creates; the creating
// process's PID follows, so a sweep can tell a live run's namespaces from
// those a crashed run left behind.
const namePrefix = "qnt"

var ownedName = regexp.MustCompile(`^` + namePrefix + `([0-9]+)x`)

// RemoveLeftovers deletes the namespaces, and kills the processes in them,
// of sandboxes whose creating process no longer exists. A live process's
// sandboxes are never touched, so concurrent test binaries are safe.
func RemoveLeftovers() error {
	names, err := namespaceNames()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range names {
		m := ownedName.FindStringSubmatch(name)
		if m == nil {
			continue
		}
		pid, err := strconv.Atoi(m[1])
		if err != nil || processExists(pid) {
			continue
		}
		errs = append(errs, deleteNamespace(name))
	}
	return errors.Join(errs...)
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// namespaceNames lists the namespaces `ip netns` knows.
func namespaceNames() ([]string, error) {
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

// deleteNamespace kills the processes inside the namespace (never this
// one: a thread of ours may be visiting it) and deletes it. A namespace
// someone else deleted meanwhile counts as deleted.
func deleteNamespace(name string) error {
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
