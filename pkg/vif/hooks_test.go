package vif

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// recordingHook appends one line to $HOOK_LOG: its name, its argument count,
// its arguments between '|', and what its standard input is.
const recordingHook = `#!/bin/sh
printf '%s %d |%s|%s|%s|%s| stdin=%s\n' "$(basename "$0")" "$#" "$1" "$2" "$3" "$4" \
	"$(readlink /proc/self/fd/0)" >>"$HOOK_LOG"
`

func writeHook(t *testing.T, dir, name, body string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	// WriteFile's mode is filtered by the umask; set it exactly.
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

// setup returns a hook directory with runnable, failing and non-hook
// entries, the file the hooks record to, and a logger writing to a buffer.
func setup(t *testing.T) (dir, record string, logBuf *bytes.Buffer, log *slog.Logger) {
	t.Helper()
	dir = t.TempDir()
	record = filepath.Join(t.TempDir(), "record")
	t.Setenv("HOOK_LOG", record)

	writeHook(t, dir, "20-b", recordingHook, 0o755)
	writeHook(t, dir, "100-c", recordingHook, 0o700)
	writeHook(t, dir, "10-a", recordingHook, 0o755)
	writeHook(t, dir, "15-fails", "#!/bin/sh\necho failing on purpose >&2\nexit 3\n", 0o755)
	writeHook(t, dir, "17-noexec", recordingHook, 0o644)
	writeHook(t, dir, ".18-hidden", recordingHook, 0o755)
	if err := os.Mkdir(filepath.Join(dir, "19-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("10-a", filepath.Join(dir, "30-link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("missing", filepath.Join(dir, "31-dangling")); err != nil {
		t.Fatal(err)
	}

	logBuf = &bytes.Buffer{}
	log = slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return dir, record, logBuf, log
}

func readRecord(t *testing.T, record string) string {
	t.Helper()
	b, err := os.ReadFile(record)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestRun(t *testing.T) {
	tests := []struct {
		name string
		inv  hookCall
		want string
	}{
		{
			name: "online with an address",
			inv:  hookCall{Command: "online", Vif: "vif3.0", VifType: "vif", Addr: "10.137.0.5"},
			want: "10-a 4 |online|vif3.0|vif|10.137.0.5| stdin=/dev/null\n" +
				"100-c 4 |online|vif3.0|vif|10.137.0.5| stdin=/dev/null\n" +
				"20-b 4 |online|vif3.0|vif|10.137.0.5| stdin=/dev/null\n" +
				"30-link 4 |online|vif3.0|vif|10.137.0.5| stdin=/dev/null\n",
		},
		{
			name: "offline without an address still passes four arguments",
			inv:  hookCall{Command: "offline", Vif: "vif3.0", VifType: "vif"},
			want: "10-a 4 |offline|vif3.0|vif|| stdin=/dev/null\n" +
				"100-c 4 |offline|vif3.0|vif|| stdin=/dev/null\n" +
				"20-b 4 |offline|vif3.0|vif|| stdin=/dev/null\n" +
				"30-link 4 |offline|vif3.0|vif|| stdin=/dev/null\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, record, logBuf, log := setup(t)
			runHookDir(context.Background(), log, dir, tt.inv)

			if got := readRecord(t, record); got != tt.want {
				t.Errorf("hooks ran as:\n%s\nwant:\n%s", got, tt.want)
			}
			logs := logBuf.String()
			for _, want := range []string{
				`level=WARN msg="network hook failed" hook=` + filepath.Join(dir, "15-fails"),
				`status="exit status 3"`,
				`msg="skipping network hook" hook=` + filepath.Join(dir, "17-noexec"),
				`msg="skipping network hook" hook=` + filepath.Join(dir, "19-dir") + ` reason="not a regular file"`,
				`msg="skipping network hook" hook=` + filepath.Join(dir, "31-dangling"),
				`msg="skipping hidden file in network hooks" hook=` + filepath.Join(dir, ".18-hidden"),
			} {
				if !strings.Contains(logs, want) {
					t.Errorf("log lacks %q:\n%s", want, logs)
				}
			}
		})
	}
}

func TestRunMissingDir(t *testing.T) {
	var logBuf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	dir := filepath.Join(t.TempDir(), "absent")
	runHookDir(context.Background(), log, dir, hookCall{Command: "online", Vif: "vif3.0", VifType: "vif"})
	want := `level=DEBUG msg="no network hooks directory" dir=` + dir
	if got := logBuf.String(); !strings.Contains(got, want) || strings.Contains(got, "level=WARN") {
		t.Errorf("log = %q, want only %q", got, want)
	}
}

func TestRunCancelled(t *testing.T) {
	dir, record, logBuf, log := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	runHookDir(ctx, log, dir, hookCall{Command: "online", Vif: "vif3.0", VifType: "vif"})
	if got := readRecord(t, record); got != "" {
		t.Errorf("hooks ran after cancellation:\n%s", got)
	}
	if want := `msg="network hooks cut short"`; !strings.Contains(logBuf.String(), want) {
		t.Errorf("log lacks %q:\n%s", want, logBuf.String())
	}
}

func TestEnviron(t *testing.T) {
	got := hookEnviron([]string{"HOME=/root", "PATH=/opt/bin", "LANG=de_DE.UTF-8", "LC_ALL=C.UTF-8", "LC_NUMERIC=fr_FR", "LCX=kept", "vif=vif3.0"})
	want := []string{"HOME=/root", "LCX=kept", "vif=vif3.0",
		"PATH=/usr/bin:/usr/sbin:/usr/libexec/xen/bin:/sbin:/bin:/usr/bin:/usr/sbin:/opt/bin", "LANG=POSIX"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("hookEnviron = %q, want %q", got, want)
	}
	if got := hookEnviron(nil); strings.Join(got, " ") != "PATH="+xenPath+" LANG=POSIX" {
		t.Errorf("hookEnviron(nil) = %q", got)
	}
}
