package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// holdsOpen reports whether process pid has path open.
func holdsOpen(pid int, path string) bool {
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	fds, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, fd := range fds {
		if target, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// TestRunsSerialised starts runs while another run holds the lock (the
// test stands in for it), changes the servers, then lets them go: each run
// must read its inputs only after taking the lock, so the chain ends
// pointing at the newest servers, with one run replacing it and the others
// finding it up to date.
func TestRunsSerialised(t *testing.T) {
	e := newEnv(t, "nameserver "+sandbox.Resolver1+"\n")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("first run: exit %d; stderr %s", code, stderr)
	}
	lock, err := os.OpenFile(e.lock, os.O_RDWR, 0)
	if err != nil {
		t.Fatalf("the first run left no lock file: %v", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	const runs = 4
	cmds := make([]*exec.Cmd, runs)
	stderrs := make([]bytes.Buffer, runs)
	for i := range cmds {
		cmds[i] = e.command()
		cmds[i].Stderr = &stderrs[i]
		if err := cmds[i].Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, cmd := range cmds {
		testsupport.WaitWithin(t, "a run waiting on the lock", 10*time.Second, func() bool { return holdsOpen(cmd.Process.Pid, e.lock) })
	}
	e.writeResolvConf(t, "nameserver "+sandbox.Resolver2+"\n")
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_UN); err != nil {
		t.Fatal(err)
	}
	codes := map[int]int{}
	for i, cmd := range cmds {
		err := cmd.Wait()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Fatal(err)
		}
		codes[cmd.ProcessState.ExitCode()]++
		if code := cmd.ProcessState.ExitCode(); code != 0 && code != 100 {
			t.Errorf("run %d: exit %d; stderr %s", i, code, stderrs[i].String())
		}
	}
	if codes[0] != 1 || codes[100] != runs-1 {
		t.Errorf("exit codes %v, want one 0 (replaced) and %d times 100 (up to date)", codes, runs-1)
	}
	want := dnatRules("10.139.1.1", sandbox.Resolver2, "10.139.1.2", sandbox.Resolver2)
	if got := chainRules(t, e.sb.NetVM); !equal(got, want) {
		t.Fatalf("rules %q, want %q (the servers written while the runs waited)", got, want)
	}
}

// TestUnreadableResolvConfFailsClosed: a resolv.conf that exists but
// cannot be read counts as naming no server, as upstream has it: the drop
// rules replace the old ones, with a warning naming the error.
func TestUnreadableResolvConfFailsClosed(t *testing.T) {
	e := newEnv(t, "nameserver "+sandbox.Resolver1+"\n")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("first run: exit %d; stderr %s", code, stderr)
	}
	if err := os.Remove(e.resolvConf); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(e.resolvConf, 0o755); err != nil { // reading a directory fails with EISDIR
		t.Fatal(err)
	}
	code, _, stderr := e.runBinary(t)
	if code != 0 || !strings.Contains(stderr, "warn") || !strings.Contains(stderr, "is a directory") {
		t.Fatalf("exit %d, stderr %q; want 0 and a warning naming the read error", code, stderr)
	}
	if got, want := chainRules(t, e.sb.NetVM), dnatRules("10.139.1.1", "drop", "10.139.1.2", "drop"); !equal(got, want) {
		t.Fatalf("rules %q, want the drop rules %q", got, want)
	}
}
