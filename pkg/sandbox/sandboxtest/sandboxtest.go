// Package sandboxtest gives Go tests a namespace sandbox that is skipped
// without root, swept of crashed runs' leftovers and closed at cleanup.
package sandboxtest

import (
	"os"
	"sync"
	"testing"

	"github.com/qubes-netvm/qnet/pkg/sandbox"
)

var sweepLeftovers sync.Once

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veth pairs and nftables rules")
	}
}

// New builds a sandbox that is closed when the test ends, even if it panics.
// The first call in a process first removes sandboxes of dead processes.
func New(t testing.TB, opts sandbox.Options) *sandbox.Sandbox {
	t.Helper()
	RequireRoot(t)
	sweepLeftovers.Do(func() {
		if err := sandbox.RemoveLeftovers(); err != nil {
			t.Logf("remove leftover sandboxes: %v", err)
		}
	})
	s, err := sandbox.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close sandbox %s: %v", s.ID, err)
		}
	})
	return s
}
