package vif

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeProcSys builds a /proc/sys tree with the hardening-related files of
// the interfaces all, default, vif3.0 and eth0, plus the global IPv6 keys.
func fakeProcSys(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	files := []string{"net/ipv6/max_hbh_opts_length", "net/ipv6/max_dst_opts_length"}
	for _, iface := range []string{"all", "default", "vif3.0", "eth0"} {
		for _, k := range []string{"accept_source_route", "accept_redirects", "secure_redirects",
			"send_redirects", "drop_unicast_in_l2_multicast", "rp_filter", "forwarding"} {
			files = append(files, "net/ipv4/conf/"+iface+"/"+k)
		}
		for _, k := range []string{"accept_source_route", "accept_redirects", "accept_ra",
			"accept_dad", "autoconf", "drop_unicast_in_l2_multicast"} {
			files = append(files, "net/ipv6/conf/"+iface+"/"+k)
		}
		files = append(files, "net/ipv4/neigh/"+iface+"/gc_stale_time")
	}
	for _, f := range files {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("7\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// upstreamHardening is what systemd-sysctl writes for the all and vif3.0
// prefixes from Qubes' file: the explicit "all" keys where they stand, each
// glob expanded for all then vif3.0, skipping keys with an explicit line.
var upstreamHardening = []Setting{
	{Key: "net/ipv6/conf/all/accept_dad", Value: "0"},
	{Key: "net/ipv4/conf/all/accept_redirects", Value: "0"},
	{Key: "net/ipv4/conf/all/accept_source_route", Value: "0"},
	{Key: "net/ipv4/conf/vif3.0/accept_source_route", Value: "0"},
	{Key: "net/ipv4/conf/vif3.0/accept_redirects", Value: "0"},
	{Key: "net/ipv4/conf/all/secure_redirects", Value: "0"},
	{Key: "net/ipv4/conf/vif3.0/secure_redirects", Value: "0"},
	{Key: "net/ipv4/conf/all/send_redirects", Value: "0"},
	{Key: "net/ipv4/conf/vif3.0/send_redirects", Value: "0"},
	{Key: "net/ipv4/conf/all/drop_unicast_in_l2_multicast", Value: "1"},
	{Key: "net/ipv4/conf/vif3.0/drop_unicast_in_l2_multicast", Value: "1"},
	{Key: "net/ipv6/conf/all/accept_source_route", Value: "-1"},
	{Key: "net/ipv6/conf/vif3.0/accept_source_route", Value: "-1"},
	{Key: "net/ipv6/conf/all/accept_redirects", Value: "0"},
	{Key: "net/ipv6/conf/vif3.0/accept_redirects", Value: "0"},
	{Key: "net/ipv6/conf/all/accept_ra", Value: "0"},
	{Key: "net/ipv6/conf/vif3.0/accept_ra", Value: "0"},
	{Key: "net/ipv6/conf/vif3.0/accept_dad", Value: "0"},
	{Key: "net/ipv6/conf/all/autoconf", Value: "0"},
	{Key: "net/ipv6/conf/vif3.0/autoconf", Value: "0"},
	{Key: "net/ipv6/conf/all/drop_unicast_in_l2_multicast", Value: "1"},
	{Key: "net/ipv6/conf/vif3.0/drop_unicast_in_l2_multicast", Value: "1"},
}

func writeConf(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "81-test.conf")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestHardening(t *testing.T) {
	root := fakeProcSys(t)
	tests := []struct {
		name     string
		confPath string
		ifaces   []string
		want     []Setting
	}{
		{
			name:     "upstream file",
			confPath: writeConf(t, BuiltinHardening),
			ifaces:   []string{"all", "vif3.0"},
			want:     upstreamHardening,
		},
		{
			name:     "built-in when the file is absent",
			confPath: filepath.Join(t.TempDir(), "absent.conf"),
			ifaces:   []string{"all", "vif3.0"},
			want:     upstreamHardening,
		},
		{
			name: "exclusion, missing files, other interfaces, neigh prefix",
			confPath: writeConf(t, strings.Join([]string{
				"net.ipv4.conf.*.rp_filter = 2",
				"-net/ipv4/conf/vif3.0/rp_filter",
				"net.ipv4.conf.eth0.forwarding = 1",     // not under a prefix
				"net.ipv4.conf.default.forwarding = 1",  // not under a prefix
				"-net.ipv4.conf.all.no_such_key = 1",    // explicit: kept though missing
				"net.ipv4.conf.*.no_such_glob = 1",      // glob: only existing files
				"net.ipv4.neigh.*.gc_stale_time = 30",   // neigh prefixes
				"net.ipv?.conf.vif3/0.forwarding = 1",   // glob on another component
				"net.ipv4.conf.vif3/0.forwarding = 0",   // explicit beats that glob
				"net.ipv4.conf.vif*.send_redirects = 0", // glob inside a component
			}, "\n")),
			ifaces: []string{"all", "vif3.0"},
			want: []Setting{
				{Key: "net/ipv4/conf/all/rp_filter", Value: "2"},
				{Key: "net/ipv4/conf/all/no_such_key", Value: "1", IgnoreFailure: true},
				{Key: "net/ipv4/neigh/all/gc_stale_time", Value: "30"},
				{Key: "net/ipv4/neigh/vif3.0/gc_stale_time", Value: "30"},
				{Key: "net/ipv4/conf/vif3.0/forwarding", Value: "0"},
				{Key: "net/ipv4/conf/vif3.0/send_redirects", Value: "0"},
			},
		},
		{
			name:     "no interfaces: nothing",
			confPath: writeConf(t, BuiltinHardening),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Hardening(tt.confPath, root, tt.ifaces)
			if err != nil {
				t.Fatalf("Hardening: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("settings:\n got  %+v\n want %+v", got, tt.want)
			}
		})
	}
}

func TestHardeningErrors(t *testing.T) {
	root := fakeProcSys(t)
	tests := []struct {
		name     string
		confPath string
		ifaces   []string
		wantErr  string
	}{
		{
			name:     "garbage line fails like systemd-sysctl's exit status",
			confPath: writeConf(t, "net.ipv4.conf.*.rp_filter = 2\nnonsense\n"),
			ifaces:   []string{"all"},
			wantErr:  `81-test.conf:2: not an assignment: "nonsense"`,
		},
		{
			name:     "unreadable path",
			confPath: t.TempDir(), // a directory
			ifaces:   []string{"all"},
			wantErr:  "read hardening settings",
		},
		{
			name:     "interface name with a slash",
			confPath: writeConf(t, BuiltinHardening),
			ifaces:   []string{"all", "../x"},
			wantErr:  `bad interface name "../x"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Hardening(tt.confPath, root, tt.ifaces)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if got != nil {
				t.Errorf("settings = %+v, want none on error", got)
			}
		})
	}
}
