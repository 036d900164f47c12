// Package testsupport gives Go tests a namespace sandbox that is skipped
// without root, swept of crashed runs' leftovers and closed at cleanup.
package testsupport

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
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

// BinDirEnv names a directory of prebuilt binaries (the vmtest image has
// no Go toolchain); without it, Main builds the commands.
const BinDirEnv = "QNET_BIN_DIR"

// Build is one command a TestMain needs: its name, its package directory
// relative to the test's own ("." for the test's own package) and, if
// set, where to store the path of its binary.
type Build struct {
	Name    string
	Package string
	Path    *string
}

// Main is a whole TestMain: it builds the commands (or takes them from
// $QNET_BIN_DIR), runs the tests, removes what it built and exits with
// the tests' code.
func Main(m *testing.M, builds ...Build) {
	dir, cleanup, err := buildAll(builds)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, b := range builds {
		if b.Path != nil {
			*b.Path = filepath.Join(dir, b.Name)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// buildAll builds the commands into one temporary directory, or checks
// that $QNET_BIN_DIR holds them, and returns the directory and a function
// that removes what it built.
func buildAll(builds []Build) (dir string, cleanup func(), err error) {
	if dir := os.Getenv(BinDirEnv); dir != "" {
		for _, b := range builds {
			if _, err := os.Stat(filepath.Join(dir, b.Name)); err != nil {
				return "", nil, fmt.Errorf("prebuilt %s: %w", b.Name, err)
			}
		}
		return dir, func() {}, nil
	}
	if dir, err = os.MkdirTemp("", "qnt-bin-"); err != nil {
		return "", nil, err
	}
	for _, b := range builds {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, b.Name), b.Package)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", nil, fmt.Errorf("build %s: %w\n%s", b.Name, err, out)
		}
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// ReportPercentiles reports the median and the 90th percentile of runs, in
// milliseconds, as the benchmark metrics <name>-median-ms and <name>-p90-ms.
func ReportPercentiles(b *testing.B, name string, runs []time.Duration) {
	b.Helper()
	if len(runs) == 0 {
		b.Fatalf("%s: no runs to report", name)
	}
	s := slices.Sorted(slices.Values(runs))
	at := func(p int) float64 { return float64(s[(len(s)-1)*p/100]) / float64(time.Millisecond) }
	b.ReportMetric(at(50), name+"-median-ms")
	b.ReportMetric(at(90), name+"-p90-ms")
}
