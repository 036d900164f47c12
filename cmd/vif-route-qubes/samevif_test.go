package main_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// gate is a network hook that, for one command, holds the first run that
// calls it until the test opens the gate, and logs every call's start and
// end with the calling run's process id: a test can hold one hotplug run
// mid-way and watch what a second run of the same vif does meanwhile.
type gate struct {
	t   *testing.T
	dir string
	log string
}

func newGate(t *testing.T, r *rig) *gate {
	g := &gate{t: t, dir: filepath.Join(r.dir, "gate"), log: filepath.Join(r.dir, "gate.log")}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The hook waits at most 30 s so that a failed test never leaves it
	// behind for long.
	script := fmt.Sprintf(`#!/bin/sh
echo "$PPID start $1 $4" >> %[2]s
if [ -e %[1]s/hold-$1 ] && mkdir %[1]s/held-$1 2>/dev/null; then
	i=0
	while [ ! -e %[1]s/open ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
fi
echo "$PPID end $1 $4" >> %[2]s
`, g.dir, g.log)
	if err := os.WriteFile(filepath.Join(r.hooksDir, "50-gate"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return g
}

// hold makes the next run of command stop in the hook.
func (g *gate) hold(command string) {
	if err := os.Remove(filepath.Join(g.dir, "open")); err != nil && !os.IsNotExist(err) {
		g.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.dir, "hold-"+command), nil, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gate) open() {
	if err := os.WriteFile(filepath.Join(g.dir, "open"), nil, 0o644); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gate) calls() []string {
	b, err := os.ReadFile(g.log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

// runs lists the process ids that called the hook, in the order of their
// first call.
func (g *gate) runs() []string {
	var pids []string
	for _, c := range g.calls() {
		if pid, _, _ := strings.Cut(c, " "); !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// serialised reports whether every run's calls are contiguous: no run
// called the hook after another run had started calling it.
func (g *gate) serialised() bool {
	var last string
	var seen []string
	for _, c := range g.calls() {
		pid, _, _ := strings.Cut(c, " ")
		if pid != last {
			if slices.Contains(seen, pid) {
				return false
			}
			seen, last = append(seen, pid), pid
		}
	}
	return true
}

func (g *gate) reset() {
	if err := os.Remove(g.log); err != nil && !os.IsNotExist(err) {
		g.t.Fatal(err)
	}
}

// background is a hotplug run started in the background whose standard
// error is collected.
type background struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr strings.Builder
	done   chan struct{}
}

func (r *rig) background(vif string, domid, devid int, args ...string) *background {
	r.t.Helper()
	cmd, stderr := r.start(vif, domid, devid, args...)
	b := &background{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			b.mu.Lock()
			b.stderr.WriteString(sc.Text() + "\n")
			b.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	return b
}

func (b *background) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stderr.String()
}

// wait returns the exit code once the run ends.
func (b *background) wait(t *testing.T) int {
	t.Helper()
	<-b.done
	err := b.cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0
}

// sameVifTwice holds a first run of command in its hook, starts a second
// run of the same command for the same vif, and checks that the second
// waits for the first (its hook does not start while the first's runs),
// then that both exit 0 and their hooks ran one after the other.
func sameVifTwice(t *testing.T, r *rig, g *gate, vif string, domid int, command string) {
	t.Helper()
	g.reset()
	g.hold(command)
	first := r.background(vif, domid, 0, command)
	testsupport.WaitFor(t, "the first "+command+" to reach its hook", func() bool { return len(g.runs()) > 0 })
	second := r.background(vif, domid, 0, command)
	testsupport.WaitFor(t, "the second "+command+" to wait for the first", func() bool {
		if runs := g.runs(); len(runs) > 1 {
			t.Fatalf("the second %s ran its hook while the first was still in its own: %q\nsecond's stderr:\n%s", command, g.calls(), second.output())
		}
		return strings.Contains(second.output(), "waiting")
	})
	g.open()
	for i, b := range []*background{first, second} {
		if code := b.wait(t); code != 0 {
			t.Fatalf("%s run %d: exit %d\n%s", command, i+1, code, b.output())
		}
	}
	if runs := g.runs(); len(runs) != 2 || !g.serialised() {
		t.Errorf("hook calls %q, want two runs one after the other", g.calls())
	}
}

// settled waits until the vif's IPv6 link-local address has finished
// duplicate address detection, so that two snapshots taken after online do
// not differ only by its "tentative" flag.
func settled(t *testing.T, r *rig, vif string) string {
	t.Helper()
	testsupport.WaitFor(t, "DAD on "+vif, func() bool {
		out, err := r.sb.NetVM.Exec("ip", "-6", "-o", "addr", "show", "dev", vif, "tentative")
		if err != nil {
			t.Fatal(err)
		}
		return len(strings.TrimSpace(string(out))) == 0
	})
	return r.snapshot()
}

// Two onlines of one vif started together (a retried or duplicated hotplug)
// are serialised whole and end exactly as one online would; so do two
// offlines.
func TestSameVifTwiceAtOnce(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", backIPv6)
	const vif = "vif45.0"
	c := r.client(sandbox.ClientSpec{Domid: 45, IPv4: "10.137.0.45", IPv6: "fd09:24ef:4179::a89:45", Gateway6: backIPv6},
		"10.137.0.45 fd09:24ef:4179::a89:45")
	g := newGate(t, r)

	sameVifTwice(t, r, g, vif, 45, "online")
	twice := settled(t, r, vif)
	ping(t, c.NS, "203.0.113.1")
	ping(t, c.NS, "2001:db8:203::1")

	sameVifTwice(t, r, g, vif, 45, "offline")
	offlineTwice := settled(t, r, vif)

	// One run each, for comparison (the gate no longer holds).
	r.mustHotplug(vif, 45, 0, "online")
	if once := settled(t, r, vif); once != twice {
		t.Errorf("two onlines at once differ from one:\n%s", sandbox.StateDiff(once, twice))
	}
	r.mustHotplug(vif, 45, 0, "offline")
	if once := settled(t, r, vif); once != offlineTwice {
		t.Errorf("two offlines at once differ from one:\n%s", sandbox.StateDiff(once, offlineTwice))
	}
}

// A run that cannot get its vif's lock in time fails with an error naming
// the vif and the lock, and changes nothing.
func TestSameVifLockTimeout(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 46, IPv4: "10.137.0.46"}, "10.137.0.46")
	lock := filepath.Join(r.dir, "locks", "vif46.0.lock")
	if err := os.MkdirAll(filepath.Dir(lock), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	before := r.snapshot()
	res := r.hotplug("vif46.0", 46, 0, nil, "--lock-wait", "200ms", "online")
	if res.code != 1 || !strings.Contains(res.stderr, "vif46.0") || !strings.Contains(res.stderr, lock) {
		t.Fatalf("exit %d, want 1 with an error naming vif46.0 and %s:\n%s", res.code, lock, res.stderr)
	}
	r.requireUnchanged(before)
}
