package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// demoBinary is the demo binary, built with the two project binaries next to it.
var demoBinary string

func TestMain(m *testing.M) {
	testsupport.Main(m,
		testsupport.Build{Name: "demo", Package: ".", Path: &demoBinary},
		testsupport.Build{Name: "vif-route-qubes", Package: "../../cmd/vif-route-qubes"},
		testsupport.Build{Name: "qubes-setup-dnat-to-ns", Package: "../../cmd/qubes-setup-dnat-to-ns"},
	)
}

func demoCommand(args ...string) *exec.Cmd {
	return exec.Command(demoBinary, append([]string{"--bin-dir", filepath.Dir(demoBinary)}, args...)...)
}

// runDemo runs the demo binary and returns its exit code and output.
func runDemo(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := demoCommand(args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return exitCode(t, cmd.Run()), out.String()
}

func exitCode(t *testing.T, err error) int {
	t.Helper()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr):
		return exitErr.ExitCode()
	}
	t.Fatalf("run demo: %v", err)
	return 0
}

var (
	sandboxName = regexp.MustCompile(`\bqn[tk][0-9]+x[0-9]+-[a-z0-9]+`)
	natName     = regexp.MustCompile(`\bvif[0-9]+\.[0-9]+-nat\b`)
	workDir     = regexp.MustCompile(`/\S*/qnet-demo-[0-9]+`)
	stepLine    = regexp.MustCompile(`^(✓|✗) ([0-9]+) (\S+)`)
)

// stepMarks returns the verdict of every step line, keyed by step number,
// and the name of the last step.
func stepMarks(output string) (map[int][]string, string) {
	marks, last := map[int][]string{}, ""
	for _, l := range strings.Split(output, "\n") {
		if m := stepLine.FindStringSubmatch(l); m != nil {
			var n int
			fmt.Sscan(m[2], &n)
			marks[n] = append(marks[n], m[1])
			last = strings.TrimSuffix(m[3], ":")
		}
	}
	return marks, last
}

// assertNothingLeft checks that no namespace the output names, no process
// in them (dnsmasq's command line carries the sandbox's ID) and neither the
// demo's nor the sandbox's temporary directory remain.
func assertNothingLeft(t *testing.T, output string) {
	t.Helper()
	names := append(sandboxName.FindAllString(output, -1), natName.FindAllString(output, -1)...)
	if len(names) == 0 {
		t.Fatalf("the demo printed no namespace name:\n%s", output)
	}
	for _, name := range names {
		if _, err := os.Lstat(filepath.Join("/run/netns", name)); err == nil {
			t.Errorf("namespace %s survived the demo", name)
		}
	}
	id, _, _ := strings.Cut(names[0], "-")
	deadline := time.Now().Add(10 * time.Second)
	for {
		survivors := processesMentioning(t, id+"-")
		if len(survivors) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of the demo survived it: %q", survivors)
			break
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), id+"-*"))
	dirs = append(dirs, workDir.FindAllString(output, -1)...)
	for _, dir := range dirs {
		if _, err := os.Lstat(dir); err == nil {
			t.Errorf("%s survived the demo", dir)
		}
	}
}

// processesMentioning lists processes whose command line contains marker.
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
// line of every step, numbered from 1 without a gap to the cleanup, and
// leave nothing behind.
func TestDemoEndToEnd(t *testing.T) {
	testsupport.RequireRoot(t)
	code, output := runDemo(t)
	t.Log(output)
	if code != 0 {
		t.Errorf("demo exit %d, want 0", code)
	}
	marks, last := stepMarks(output)
	if last != "cleanup" || len(marks) < 7 {
		t.Errorf("%d steps ending with %q, want at least 7 ending with cleanup", len(marks), last)
	}
	for step := 1; step <= len(marks); step++ {
		if len(marks[step]) == 0 {
			t.Errorf("no line for step %d", step)
		}
	}
	if strings.Contains(output, "✗") {
		t.Errorf("output has a ✗")
	}
	assertNothingLeft(t, output)
}

// TestKeepThenClean keeps the sandbox up, checks that it still carries
// traffic after the demo exited, then removes it with --clean and finds
// nothing left.
func TestKeepThenClean(t *testing.T) {
	testsupport.RequireRoot(t)
	code, output := runDemo(t, "--keep")
	t.Log(output)
	t.Cleanup(func() { runDemo(t, "--clean") })
	if code != 0 {
		t.Fatalf("demo --keep exit %d, want 0", code)
	}
	if !strings.Contains(output, "make demo-clean") || !strings.Contains(output, "nft list ruleset") {
		t.Errorf("--keep did not print how to explore and remove the sandbox")
	}
	if strings.Contains(output, "offline") || strings.Contains(output, "cleanup") || strings.Contains(output, "✗") {
		t.Errorf("--keep ran offline or cleanup, or failed a step")
	}
	m := regexp.MustCompile(`\bqnk[0-9]+x[0-9]+-c11x0\b`).FindString(output)
	if m == "" {
		t.Fatal("no dual-stack client namespace named in the output")
	}
	for _, target := range []string{sandbox.InternetHost, sandbox.InternetHost6} {
		if out, err := exec.Command("ip", "netns", "exec", m, "ping", "-c1", "-W5", target).CombinedOutput(); err != nil {
			t.Errorf("ping %s from the kept %s: %v\n%s", target, m, err, out)
		}
	}
	out, err := exec.Command("ip", "netns", "exec", m, "dig", "+short", "+tries=1", "@10.139.1.1", "whoami.test").CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != sandbox.Resolver2 {
		t.Errorf("dig whoami.test from the kept %s = %q, %v; want %s", m, got, err, sandbox.Resolver2)
	}

	code, cleanOutput := runDemo(t, "--clean")
	t.Log(cleanOutput)
	if code != 0 {
		t.Errorf("demo --clean exit %d, want 0", code)
	}
	assertNothingLeft(t, output)
}

// cleanupLine is the verdict of the final cleanup, whatever its number.
var cleanupLine = regexp.MustCompile(`(?m)^✓ [0-9]+ cleanup`)

// TestInterruptRemovesEverything sends SIGINT, as Ctrl-C does, once the
// clients are online: the demo must say so, exit 130 and leave nothing.
func TestInterruptRemovesEverything(t *testing.T) {
	testsupport.RequireRoot(t)
	cmd := demoCommand()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var output strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		output.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "✓ 3 online vif12.0") { // the NAT client is next
			if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
				t.Fatal(err)
			}
		}
	}
	code := exitCode(t, cmd.Wait())
	t.Log(output.String())
	if code != 130 {
		t.Errorf("interrupted demo exit %d, want 130", code)
	}
	if !strings.Contains(output.String(), "interrupted") || !cleanupLine.MatchString(output.String()) {
		t.Errorf("interrupted demo did not report the interruption and a clean cleanup")
	}
	assertNothingLeft(t, output.String())
}
