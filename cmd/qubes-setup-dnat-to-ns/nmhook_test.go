package main_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The NetworkManager dispatcher hook runs the binary on the four events
// upstream's hook reacts to and on dhcp6-change, and restarts the updates proxy unless the
// binary reports the rules unchanged (exit 100).
func TestNMHook(t *testing.T) {
	hook, err := filepath.Abs("../../xen-scripts/qubes-nmhook")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		event       string
		exit        int
		wantRun     bool
		wantRestart bool
	}{
		{"up", 0, true, true},
		{"vpn-up", 0, true, true},
		{"vpn-down", 1, true, true},
		{"dhcp4-change", 100, true, false},
		{"down", 0, false, false},
		{"dhcp6-change", 0, true, true},
		{"dhcp6-change", 100, true, false},
		{"pre-up", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s-exit%d", tt.event, tt.exit), func(t *testing.T) {
			dir := t.TempDir()
			log := filepath.Join(dir, "log")
			stub := func(name, body string) {
				if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			stub("dnat", fmt.Sprintf(`echo "dnat $*" >> %s; exit %d`, log, tt.exit))
			stub("systemctl", fmt.Sprintf(`echo "restart $*" >> %s`, log))
			stub("service", fmt.Sprintf(`echo "restart $*" >> %s`, log))
			cmd := exec.Command("sh", hook, "eth0", tt.event)
			cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin", "QUBES_SETUP_DNAT_TO_NS=" + filepath.Join(dir, "dnat")}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("hook: %v\n%s", err, out)
			}
			b, _ := os.ReadFile(log)
			got := string(b)
			if ran := strings.Contains(got, "dnat \n"); ran != tt.wantRun {
				t.Errorf("ran qubes-setup-dnat-to-ns = %v, want %v (log %q)", ran, tt.wantRun, got)
			}
			if restarted := strings.Contains(got, "restart") && strings.Contains(got, "qubes-updates-proxy"); restarted != tt.wantRestart {
				t.Errorf("restarted the updates proxy = %v, want %v (log %q)", restarted, tt.wantRestart, got)
			}
		})
	}
}
