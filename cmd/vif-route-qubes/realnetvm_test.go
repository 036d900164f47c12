package main_test

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// Hardening follows systemd-sysctl's failure rules: a key the kernel lacks
// (ENOENT) and a read-only one (EACCES) are logged and skipped, the rest of
// the file is applied, and the client has network.
func TestHardeningSkipsMissingAndReadOnlyKeys(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-service/harden-network-interfaces", "1")
	conf := strings.Join([]string{
		"net.ipv4.conf.*.send_redirects = 0",
		"net.ipv4.conf.all.qnet_no_such_key = 1", // absent from every kernel: ENOENT
		"net.ipv4.conf.all.mc_forwarding = 1",    // mode 0444, even for root: EACCES
		"net.ipv6.conf.*.accept_ra = 0",
		"",
	}, "\n")
	if err := os.WriteFile(r.hardConf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	c := r.client(sandbox.ClientSpec{Domid: 40, IPv4: "10.137.0.40"}, "10.137.0.40")
	res := r.mustHotplug("vif40.0", 40, 0, "online")
	for _, key := range []string{"net/ipv4/conf/all/qnet_no_such_key", "net/ipv4/conf/all/mc_forwarding"} {
		if !strings.Contains(res.stderr, key) {
			t.Errorf("the skipped %s is not logged:\n%s", key, res.stderr)
		}
	}
	for key, want := range map[string]string{
		"net/ipv4/conf/vif40.0/send_redirects": "0",
		"net/ipv4/conf/all/send_redirects":     "0",
		"net/ipv6/conf/vif40.0/accept_ra":      "0",
		"net/ipv4/conf/all/mc_forwarding":      "0",
	} {
		if got := r.sysctl(key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	ping(t, c.NS, "203.0.113.1")
}

// A XenStore request that times out leaves the run's connection unusable;
// the failure still reaches the toolstack, through a fresh connection.
func TestErrorReportedAfterXenStoreTimeout(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 41, IPv4: "10.137.0.41"}, "10.137.0.41")
	before := r.snapshot()
	r.xs.Stall(xenbusPath(41, 0) + "/type")
	res := r.hotplug("vif41.0", 41, 0, nil, "online")
	if res.code != 1 || !strings.Contains(res.stderr, "timeout") {
		t.Fatalf("exit %d, want 1 with a timeout:\n%s", res.code, res.stderr)
	}
	r.requireUnchanged(before)
	if v, _ := r.xs.Get(xenbusPath(41, 0) + "/hotplug-status"); v != "error" {
		t.Errorf("hotplug-status = %q, want error\nstderr:\n%s", v, res.stderr)
	}
	if v, _ := r.xs.Get(xenbusPath(41, 0) + "/hotplug-error"); !strings.Contains(v, xenbusPath(41, 0)+"/type") || !strings.Contains(v, "timeout") {
		t.Errorf("hotplug-error = %q, want the timed-out request named", v)
	}
}

// Offline accepts every interface name online accepted (one rule for
// vifname and the NAT namespace), in routed and in NAT mode: a vifname with
// characters the NAT code used to refuse goes online and offline cleanly.
func TestVifnameAcceptedOnlineGoesOffline(t *testing.T) {
	t.Run("routed", func(t *testing.T) {
		r := newRig(t, sandbox.Options{})
		r.client(sandbox.ClientSpec{Domid: 42, IPv4: "10.137.0.42"}, "10.137.0.42")
		r.xs.Set(xenbusPath(42, 0)+"/vifname", "work+net")
		r.mustHotplug("vif42.0", 42, 0, "online")
		if got := r.elements("ip", "allowed"); !slices.Equal(got, []string{`"work+net" . 10.137.0.42`}) {
			t.Fatalf("allowed = %v", got)
		}
		r.mustHotplug("vif42.0", 42, 0, "offline")
		if got := r.elements("ip", "allowed"); len(got) != 0 {
			t.Errorf("allowed after offline = %v", got)
		}
		if got := r.routes("-4", "work+net"); len(got) != 0 {
			t.Errorf("routes after offline = %+v", got)
		}
	})
	t.Run("NAT", func(t *testing.T) {
		r := newRig(t, sandbox.Options{})
		// The namespace name is global: make it unique to this process.
		name := fmt.Sprintf("n+%d", os.Getpid())
		nsName := name + "-nat"
		t.Cleanup(func() { _, _ = r.sb.NetVM.Exec("ip", "netns", "delete", nsName) })
		c := r.client(sandbox.ClientSpec{Domid: 43, IPv4: "10.137.0.143", Gateway: "10.138.0.143"}, "10.137.0.43")
		r.xs.Set(xenbusPath(43, 0)+"/vifname", name)
		r.db.Set("/mapped-ip/10.137.0.43/visible-ip", "10.137.0.143")
		r.db.Set("/mapped-ip/10.137.0.43/visible-gateway", "10.138.0.143")
		r.mustHotplug("vif43.0", 43, 0, "online")
		if !slices.Contains(testsupport.Namespaces(t), nsName) {
			t.Fatalf("namespace %s missing after online", nsName)
		}
		ping(t, c.NS, "203.0.113.1")
		r.mustHotplug("vif43.0", 43, 0, "offline")
		if slices.Contains(testsupport.Namespaces(t), nsName) {
			t.Errorf("namespace %s left after offline", nsName)
		}
		if got := r.elements("ip", "allowed"); len(got) != 0 {
			t.Errorf("allowed after offline = %v", got)
		}
	})
}

// Offline never needs QubesDB: with its daemon gone or hung (as at
// shutdown), offline still removes everything XenStore's ip names (set
// elements, routes, neighbours, conntrack) and the back addresses, and
// exits 0.
func TestOfflineWithoutQubesDB(t *testing.T) {
	for _, tc := range []struct {
		name    string
		breakDB func(r *rig)
	}{
		{"absent", func(r *rig) {
			if err := r.db.Close(); err != nil {
				t.Fatal(err)
			}
		}},
		{"hung", func(r *rig) { r.db.Stall("/qubes-netvm-gateway") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, sandbox.Options{})
			r.db.Set("/qubes-netvm-gateway6", backIPv6)
			const vif, v4, v6 = "vif44.0", "10.137.0.44", "fd09:24ef:4179::a89:44"
			c := r.client(sandbox.ClientSpec{Domid: 44, IPv4: v4, IPv6: v6, Gateway6: backIPv6}, v4+" "+v6)
			r.mustHotplug(vif, 44, 0, "online")
			ping(t, c.NS, "203.0.113.1")
			if out, err := r.sb.NetVM.Exec("conntrack", "-L", "-s", v4); err != nil || !strings.Contains(string(out), "src="+v4) {
				t.Fatalf("no conntrack entry from %s after a ping: %v\n%s", v4, err, out)
			}

			tc.breakDB(r)
			res := r.mustHotplug(vif, 44, 0, "offline")
			if !strings.Contains(res.stderr, "without QubesDB") {
				t.Errorf("the missing QubesDB is not logged:\n%s", res.stderr)
			}
			for _, fam := range []string{"ip", "ip6"} {
				for _, set := range []string{"allowed", "downstream"} {
					if got := r.elements(fam, set); len(got) != 0 {
						t.Errorf("%s %s after offline = %v", fam, set, got)
					}
				}
			}
			if got := r.routes("-4", vif); len(got) != 0 {
				t.Errorf("IPv4 routes after offline = %+v", got)
			}
			for _, rt := range r.routes("-6", vif) {
				if rt.Metric == 32752-44 {
					t.Errorf("IPv6 host route left after offline: %+v", rt)
				}
			}
			if got := r.neighbours(vif); len(got) != 0 {
				t.Errorf("neighbours after offline = %+v", got)
			}
			if l, _ := r.link(vif); len(l.globalAddrs()) != 0 {
				t.Errorf("back addresses after offline = %v", l.globalAddrs())
			}
			if out, err := r.sb.NetVM.Exec("conntrack", "-L", "-s", v4); err != nil || strings.Contains(string(out), "src="+v4) {
				t.Errorf("conntrack entries from %s after offline: %v\n%s", v4, err, out)
			}
		})
	}
}
