package dns

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceAtomically writes content to a temporary file beside path and
// renames it over path, as NetworkManager and resolvconf do.
func replaceAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	mustWrite(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// relinkAtomically points the symlink at path to target by renaming a new
// symlink over it.
func relinkAtomically(t *testing.T, path, target string) {
	t.Helper()
	tmp := path + ".newlink"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func TestWatchPoints(t *testing.T) {
	root := t.TempDir()
	etc, run := filepath.Join(root, "etc"), filepath.Join(root, "run")
	for _, d := range []string{etc, filepath.Join(run, "nm")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(etc, "resolv.conf")
	if err := os.Symlink("../run/nm/resolv.conf", conf); err != nil {
		t.Fatal(err)
	}
	got := watchPoints(conf)
	want := map[string]map[string]bool{
		etc:                      {"resolv.conf": true},
		filepath.Join(run, "nm"): {"resolv.conf": true},
	}
	if !equalPoints(got, want) {
		t.Fatalf("symlink into an existing directory: watchPoints = %v, want %v", got, want)
	}
	relinkAtomically(t, conf, filepath.Join(run, "missing", "deeper", "resolv.conf"))
	got = watchPoints(conf)
	want = map[string]map[string]bool{etc: {"resolv.conf": true}, run: {"missing": true}}
	if !equalPoints(got, want) {
		t.Fatalf("symlink into a missing directory: watchPoints = %v, want %v", got, want)
	}
	loop := filepath.Join(etc, "loop")
	if err := os.Symlink("loop", loop); err != nil {
		t.Fatal(err)
	}
	if got := watchPoints(loop); !equalPoints(got, map[string]map[string]bool{etc: {"loop": true}}) {
		t.Fatalf("symlink loop: watchPoints = %v", got)
	}
}

func equalPoints(a, b map[string]map[string]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for dir, names := range a {
		if len(names) != len(b[dir]) {
			return false
		}
		for n := range names {
			if !b[dir][n] {
				return false
			}
		}
	}
	return true
}

// TestFileWatcher changes resolv.conf in each way the tools that own it do
// and expects a poke after each; every step also proves that the watches
// were re-targeted after the previous one.
func TestFileWatcher(t *testing.T) {
	root := t.TempDir()
	etc := filepath.Join(root, "etc")
	nm := filepath.Join(root, "run", "NetworkManager")
	resolved := filepath.Join(root, "run", "systemd", "resolve")
	for _, d := range []string{etc, nm} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(etc, "resolv.conf")
	mustWrite(t, conf, "nameserver 192.0.2.1\n")

	w, err := newFileWatcher(conf, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pokes := make(chan string, 100)
	go w.run(ctx, func(reason string) { pokes <- reason })

	steps := []struct {
		name string
		act  func()
	}{
		{"rewritten in place", func() { mustWrite(t, conf, "nameserver 192.0.2.2\n") }},
		{"replaced by rename", func() { replaceAtomically(t, conf, "nameserver 192.0.2.3\n") }},
		{"deleted", func() { os.Remove(conf) }},
		{"created", func() { mustWrite(t, conf, "nameserver 192.0.2.4\n") }},
		{"replaced by a symlink", func() {
			mustWrite(t, filepath.Join(nm, "resolv.conf"), "nameserver 192.0.2.5\n")
			relinkAtomically(t, conf, "../run/NetworkManager/resolv.conf")
		}},
		{"symlink target replaced by rename", func() { replaceAtomically(t, filepath.Join(nm, "resolv.conf"), "nameserver 192.0.2.6\n") }},
		{"symlink swapped to a directory that does not exist yet", func() {
			relinkAtomically(t, conf, "../run/systemd/resolve/stub-resolv.conf")
		}},
		{"missing directory created with the target", func() {
			if err := os.MkdirAll(resolved, 0o755); err != nil {
				t.Fatal(err)
			}
			mustWrite(t, filepath.Join(resolved, "stub-resolv.conf"), "nameserver 127.0.0.53\n")
		}},
		{"new target rewritten", func() { mustWrite(t, filepath.Join(resolved, "stub-resolv.conf"), "nameserver 192.0.2.7\n") }},
	}
	for _, step := range steps {
		for len(pokes) > 0 {
			<-pokes
		}
		step.act()
		select {
		case <-pokes:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no poke within 5 s", step.name)
		}
	}
}

func TestCoalesce(t *testing.T) {
	events := make(chan string, 1)
	done := make(chan error)
	go func() { done <- coalesce(context.Background(), 50*time.Millisecond, events) }()
	for range 100 { // a burst, all absorbed by the one pending sync
		select {
		case events <- "burst":
		case err := <-done:
			t.Fatalf("coalesce returned %v while the burst was still arriving", err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := coalesce(ctx, time.Hour, events); err == nil {
		t.Fatal("coalesce ignored a cancelled context")
	}
}

// TestRelevant feeds synthetic inotify events to the filter: only events
// on a watched name, lost events and a watched directory going away count.
func TestRelevant(t *testing.T) {
	w := &fileWatcher{
		wds:   map[int32]string{1: "/etc", 2: "/run/nm"},
		names: map[string]map[string]bool{"/etc": {"resolv.conf": true}, "/run/nm": {"resolv.conf": true}},
	}
	event := func(wd int32, mask uint32, name string) []byte {
		padded := 0
		if name != "" {
			padded = (len(name) + 1 + 15) / 16 * 16
		}
		b := make([]byte, unix.SizeofInotifyEvent+padded)
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&b[0]))
		ev.Wd, ev.Mask, ev.Len = wd, mask, uint32(padded)
		copy(b[unix.SizeofInotifyEvent:], name)
		return b
	}
	tests := []struct {
		name string
		buf  []byte
		want bool
	}{
		{"watched name written", event(1, unix.IN_CLOSE_WRITE, "resolv.conf"), true},
		{"renamed over", event(2, unix.IN_MOVED_TO, "resolv.conf"), true},
		{"other file in the directory", event(1, unix.IN_CLOSE_WRITE, "hosts"), false},
		{"prefix of the name", event(1, unix.IN_CREATE, "resolv.con"), false},
		{"temporary file", event(1, unix.IN_CREATE, "resolv.conf.tmp"), false},
		{"watched name in another watched directory", event(2, unix.IN_CREATE, "hosts"), false},
		{"unknown watch (just removed)", event(9, unix.IN_IGNORED, ""), false},
		{"watched directory deleted", event(2, unix.IN_DELETE_SELF, ""), true},
		{"current watch dropped by the kernel", event(1, unix.IN_IGNORED, ""), true},
		{"queue overflow", event(-1, unix.IN_Q_OVERFLOW, ""), true},
		{"several events, one relevant", append(event(1, unix.IN_CREATE, "a"), event(1, unix.IN_MODIFY, "resolv.conf")...), true},
		{"several events, none relevant", append(event(1, unix.IN_CREATE, "a"), event(2, unix.IN_MODIFY, "b")...), false},
	}
	for _, tt := range tests {
		if got := w.relevant(tt.buf); got != tt.want {
			t.Errorf("%s: relevant = %v, want %v", tt.name, got, tt.want)
		}
	}
}
