//go:build vmtest

package vmtest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// namespace is a named network namespace a test created for itself.
type namespace struct {
	name string
	fd   int
}

// newNamespace creates a network namespace named qnt-<role>-<random>, with
// lo up, and removes it when the test ends, whether it passed or not.
func newNamespace(t *testing.T, role string) namespace {
	t.Helper()
	suffix := make([]byte, 3)
	rand.Read(suffix)
	name := fmt.Sprintf("qnt-%s-%s", role, hex.EncodeToString(suffix))
	testsupport.MustRun(t, nil, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	ns := namespace{name: name, fd: int(f.Fd())}
	ns.run(t, "ip", "link", "set", "lo", "up")
	return ns
}

// conn is an nftables connection acting inside the namespace.
func (ns namespace) conn(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatalf("nftables connection in %s: %v", ns.name, err)
	}
	return c
}

// run runs a command inside the namespace and fails the test if it fails.
func (ns namespace) run(t *testing.T, name string, args ...string) string {
	t.Helper()
	return testsupport.MustRun(t, nil, "ip", append([]string{"netns", "exec", ns.name, name}, args...)...)
}

// nftJSON runs `nft -j <args>` inside the namespace and decodes its output.
func (ns namespace) nftJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	out := ns.run(t, "nft", append([]string{"-j"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode nft -j %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// moduleLoaded reports whether the kernel module is loaded, from /proc/modules.
func moduleLoaded(t *testing.T, module string) bool {
	t.Helper()
	f, err := os.Open("/proc/modules")
	if err != nil {
		t.Fatalf("read loaded modules: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if name, _, _ := strings.Cut(s.Text(), " "); name == module {
			return true
		}
	}
	if err := s.Err(); err != nil {
		t.Fatalf("read /proc/modules: %v", err)
	}
	return false
}

// eventually polls cond until it returns nil or the deadline passes, and
// fails the test with cond's last error.
func eventually(t *testing.T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %v: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
