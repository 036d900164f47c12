package main_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
)

// When the toolstack runs it (XENBUS_PATH in the environment, no terminal),
// standard error, the hooks' output included, is appended to Xen's hotplug
// log, as Xen's helper does for every hotplug script.
func TestToolstackRunAppendsToXenHotplugLog(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 47, IPv4: "10.137.0.47"}, "10.137.0.47")
	if err := os.WriteFile(filepath.Join(r.hooksDir, "10-says"), []byte("#!/bin/sh\necho \"hook says $1\" >&2\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(r.dir, "xen-hotplug.log")
	if err := os.WriteFile(logPath, []byte("an earlier script's line\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.mustHotplug("vif47.0", 47, 0, "--hotplug-log", logPath, "--verbose", "online")
	// A failing run: its error must be in the log too.
	r.xs.Set(xenbusPath(47, 0)+"/mac", "00:16:3E:5E:6C:00")
	res := r.hotplug("vif47.0", 47, 0, nil, "--hotplug-log", logPath, "online")
	if res.code != 1 {
		t.Fatalf("online with a bad MAC: exit %d", res.code)
	}
	if res.stderr != "" {
		t.Errorf("standard error still got output:\n%s", res.stderr)
	}
	lines := readLines(t, logPath)
	if lines[0] != "an earlier script's line" {
		t.Errorf("the log's earlier content is gone: %q", lines)
	}
	for _, want := range []string{"hook says online", "running network hook", `bad MAC address "00:16:3E:5E:6C:00"`} {
		if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, want) }) {
			t.Errorf("the log lacks %q:\n%s", want, strings.Join(lines, "\n"))
		}
	}

	// Run by hand (the device's path as a flag, not from the toolstack's
	// environment), messages stay on standard error.
	before, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := r.direct("vif47.0", 47, 0, nil, "--hotplug-log", logPath, "--xenbus-path", xenbusPath(47, 0), "online")
	cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "XENBUS_PATH=") })
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := r.startIn(cmd); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if !strings.Contains(stderr.String(), "bad MAC address") {
		t.Errorf("a hand run's error is not on standard error:\n%s", stderr.String())
	}
	if after, _ := os.ReadFile(logPath); !bytes.Equal(after, before) {
		t.Errorf("a hand run wrote to the hotplug log:\n%s", after[len(before):])
	}
}

// Hooks run with Xen's hotplug environment: Xen's directories first in
// PATH, LANG=POSIX and no LC_* variable, whatever the toolstack had.
func TestHooksGetXenHotplugEnvironment(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 48, IPv4: "10.137.0.48"}, "10.137.0.48")
	envFile := filepath.Join(r.dir, "hook.env")
	if err := os.WriteFile(filepath.Join(r.hooksDir, "10-env"), []byte("#!/bin/sh\nenv > "+envFile+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	inherited := os.Getenv("PATH")
	res := r.hotplug("vif48.0", 48, 0, []string{"LANG=de_DE.UTF-8", "LC_ALL=de_DE.UTF-8", "LC_NUMERIC=fr_FR.UTF-8", "QNT_KEPT=yes"}, "online")
	if res.code != 0 {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	env := readLines(t, envFile)
	for _, kv := range env {
		if strings.HasPrefix(kv, "LC_") {
			t.Errorf("hook got %s", kv)
		}
	}
	for _, want := range []string{
		"PATH=/usr/bin:/usr/sbin:/usr/libexec/xen/bin:/sbin:/bin:/usr/bin:/usr/sbin:" + inherited,
		"LANG=POSIX",
		"QNT_KEPT=yes",
		"vif=vif48.0",
	} {
		if !slices.Contains(env, want) {
			t.Errorf("hook environment lacks %s:\n%s", want, strings.Join(env, "\n"))
		}
	}
}
