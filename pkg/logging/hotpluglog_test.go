package logging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAppendStderr redirects the standard error of a child process (this
// test binary, re-run) and checks the file with an independent reader:
// earlier content is kept, later writes to fd 2 (including a child's) are
// appended.
func TestAppendStderr(t *testing.T) {
	if os.Getenv("QNT_APPEND_STDERR") != "" {
		if err := AppendStderr(os.Getenv("QNT_APPEND_STDERR")); err != nil {
			os.Exit(3)
		}
		os.Stderr.WriteString("from the process\n")
		cmd := exec.Command("/bin/sh", "-c", "echo from a child >&2")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			os.Exit(4)
		}
		os.Exit(0)
	}
	log := filepath.Join(t.TempDir(), "xen-hotplug.log")
	if err := os.WriteFile(log, []byte("earlier line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAppendStderr$")
	cmd.Env = append(os.Environ(), "QNT_APPEND_STDERR="+log)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	got, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if want := "earlier line\nfrom the process\nfrom a child\n"; string(got) != want {
		t.Errorf("log = %q, want %q", got, want)
	}
	if stderr.Len() != 0 {
		t.Errorf("the original standard error still got %q", stderr.String())
	}
	if err := AppendStderr(filepath.Join(t.TempDir(), "no-such-dir", "x.log")); err == nil || !strings.Contains(err.Error(), "no-such-dir") {
		t.Errorf("AppendStderr into a missing directory = %v, want an error naming it", err)
	}
}
