package testsupport

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
)

// Deadline is how long WaitFor and AwaitPing wait for their condition.
const Deadline = 10 * time.Second

// WaitFor polls cond until it holds, failing the test after Deadline.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	WaitWithin(t, what, Deadline, cond)
}

// WaitWithin polls cond until it holds, failing the test after timeout, and
// returns how long it waited (for benchmark-style logs, never asserted).
func WaitWithin(t testing.TB, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	return time.Since(start)
}

// MustRun runs a tool inside ns, or in the test's own namespace when ns is
// nil (for `ip netns` management only), and returns its standard output;
// a failure ends the test with the command and its standard error.
func MustRun(t testing.TB, ns *sandbox.NS, name string, args ...string) string {
	t.Helper()
	if ns != nil {
		out, err := ns.Exec(name, args...)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		var stderr []byte
		if exit, ok := err.(*exec.ExitError); ok {
			stderr = exit.Stderr
		}
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// MustBatch runs iproute2 commands, one per line, inside ns (ip -batch).
func MustBatch(t testing.TB, ns *sandbox.NS, commands ...string) {
	t.Helper()
	if err := ns.IPBatch(commands...); err != nil {
		t.Fatal(err)
	}
}

// LoadNft loads an nftables script inside ns (nft -f -).
func LoadNft(t testing.TB, ns *sandbox.NS, script string) {
	t.Helper()
	if err := ns.LoadNft(script); err != nil {
		t.Fatal(err)
	}
}

// AwaitPing pings target from ns until a reply comes, failing the test
// after Deadline; extra goes before the target (-I, -6...).
func AwaitPing(t testing.TB, ns *sandbox.NS, target string, extra ...string) {
	t.Helper()
	if err := ns.AwaitPing(context.Background(), target, Deadline, extra...); err != nil {
		t.Fatal(err)
	}
}

// Namespaces lists the named network namespaces (`ip netns list`).
func Namespaces(t testing.TB) []string {
	t.Helper()
	names, err := sandbox.NamespaceNames()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// DeleteNamespace kills the processes inside the named namespace and
// deletes it; one already gone counts as deleted.
func DeleteNamespace(t testing.TB, name string) {
	t.Helper()
	if err := sandbox.DeleteNamespace(name); err != nil {
		t.Error(err)
	}
}
