package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// binDir holds the demo and the two project binaries, built once.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "qnet-demo-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	for name, pkg := range map[string]string{
		"demo":                   ".",
		"vif-route-qubes":        "../../cmd/vif-route-qubes",
		"qubes-setup-dnat-to-ns": "../../cmd/qubes-setup-dnat-to-ns",
	} {
		build := exec.Command("go", "build", "-o", filepath.Join(dir, name), pkg)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", name, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the demo creates network namespaces, veth pairs and nftables rules")
	}
}

// runDemo runs the demo binary and returns its exit code and output.
func runDemo(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "demo"), append([]string{"--bin-dir", binDir}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &exitErr):
		return exitErr.ExitCode(), out.String()
	}
	t.Fatalf("run demo %v: %v\n%s", args, err, out.String())
	return 0, ""
}

var (
	sandboxName = regexp.MustCompile(`\bqnt([0-9]+)x[0-9]+-[a-z0-9]+`)
	natName     = regexp.MustCompile(`\bvif[0-9]+\.[0-9]+-nat\b`)
	stepLine    = regexp.MustCompile(`^(✓|✗) ([1-7]) `)
)

// stepMarks returns the verdict of every step line, keyed by step number.
func stepMarks(output string) map[string][]string {
	marks := map[string][]string{}
	for _, l := range strings.Split(output, "\n") {
		if m := stepLine.FindStringSubmatch(l); m != nil {
			marks[m[2]] = append(marks[m[2]], m[1])
		}
	}
	return marks
}

// assertNothingLeft checks that no namespace the output names, no process
// of the run (owner, dnsmasq) and none of its files under the state root
// remain.
func assertNothingLeft(t *testing.T, output string) {
	t.Helper()
	names := append(sandboxName.FindAllString(output, -1), natName.FindAllString(output, -1)...)
	if len(names) == 0 {
		t.Fatalf("the demo printed no namespace name:\n%s", output)
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && slices.Contains(names, f[0]) {
			t.Errorf("namespace %s survived the demo", f[0])
		}
	}

	owner := sandboxName.FindStringSubmatch(output)[1]
	marker := "qnt" + owner + "x"
	deadline := time.Now().Add(10 * time.Second)
	for {
		survivors := processesMentioning(t, marker)
		var ownerPID int
		fmt.Sscan(owner, &ownerPID)
		if err := syscall.Kill(ownerPID, 0); err == nil && isOwner(ownerPID) {
			survivors = append(survivors, "demo owner "+owner)
		}
		if len(survivors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the demo survived it: %q", survivors)
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}

	// This run's state: its directory and state file under the state root
	// (another demo, kept up on purpose, may have its own there).
	for _, path := range []string{filepath.Join(stateRoot, owner), filepath.Join(stateRoot, owner+".json")} {
		if _, err := os.Lstat(path); err == nil {
			t.Errorf("%s survived the demo", path)
		}
	}
}

// processesMentioning lists processes whose command line contains marker
// (dnsmasq's carries the sandbox's temporary directory).
func processesMentioning(t *testing.T, marker string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
			continue
		}
		found = append(found, e.Name()+": "+string(bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '})))
	}
	return found
}

// TestDemoEndToEnd runs the whole demo: it must exit 0 with a ✓ on every
// step line, all seven steps present, and leave nothing behind.
func TestDemoEndToEnd(t *testing.T) {
	requireRoot(t)
	code, output := runDemo(t)
	t.Log(output)
	if code != 0 {
		t.Errorf("demo exit %d, want 0", code)
	}
	marks := stepMarks(output)
	for step := 1; step <= 7; step++ {
		got := marks[fmt.Sprint(step)]
		if len(got) == 0 {
			t.Errorf("no line for step %d", step)
		}
		if slices.Contains(got, "✗") {
			t.Errorf("step %d has a ✗ line", step)
		}
	}
	if strings.Contains(output, "✗") {
		t.Errorf("output has a ✗")
	}
	assertNothingLeft(t, output)
}

// TestKeepThenClean keeps the sandbox up, checks it is up and still served
// by a live owner, then removes it with --clean and finds nothing left.
func TestKeepThenClean(t *testing.T) {
	requireRoot(t)
	code, output := runDemo(t, "--keep")
	t.Log(output)
	t.Cleanup(func() {
		if _, err := os.Stat(stateRoot); err == nil {
			runDemo(t, "--clean")
		}
	})
	if code != 0 {
		t.Fatalf("demo --keep exit %d, want 0", code)
	}
	if !strings.Contains(output, "make demo-clean") || !strings.Contains(output, "nft list ruleset") {
		t.Errorf("--keep did not print how to explore and remove the sandbox")
	}
	if marks := stepMarks(output); len(marks["6"]) != 0 || len(marks["7"]) != 0 {
		t.Errorf("--keep ran offline or cleanup: %v", marks)
	}
	m := sandboxName.FindStringSubmatch(output)
	if m == nil {
		t.Fatal("no namespace named in the output")
	}
	var ownerPID int
	fmt.Sscan(m[1], &ownerPID)
	if !isOwner(ownerPID) {
		t.Errorf("owner %d is not running after --keep", ownerPID)
	}
	if _, err := os.Stat(statePath(ownerPID)); err != nil {
		t.Errorf("state file missing after --keep: %v", err)
	}
	if _, err := os.Stat(filepath.Join("/run/netns", m[0])); err != nil {
		t.Errorf("namespace %s missing after --keep: %v", m[0], err)
	}

	code, cleanOutput := runDemo(t, "--clean")
	t.Log(cleanOutput)
	if code != 0 {
		t.Errorf("demo --clean exit %d, want 0", code)
	}
	assertNothingLeft(t, output)
}
