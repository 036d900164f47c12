package main_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// NAT mode end to end: the client knows only its visible address and
// gateway; the netvm routes its real address; offline removes the private
// namespace. The domain id is unusual because the namespace name
// (<vif>-nat) is global.
func TestNATMode(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	const vif, nsName = "vif32001.0", "vif32001.0-nat"
	t.Cleanup(func() { _, _ = r.sb.NetVM.Exec("ip", "netns", "delete", nsName) })
	c := r.client(sandbox.ClientSpec{Domid: 32001, IPv4: "10.137.0.200", Gateway: "10.138.0.200"}, "10.137.0.20 fd09:24ef:4179::a89:14")
	r.db.Set("/mapped-ip/10.137.0.20/visible-ip", "10.137.0.200")
	r.db.Set("/mapped-ip/10.137.0.20/visible-gateway", "10.138.0.200")

	res := r.mustHotplug(vif, 32001, 0, "online")
	if !strings.Contains(res.stderr, "NAT mode does not support IPv6") {
		t.Errorf("the skipped IPv6 address is not logged:\n%s", res.stderr)
	}
	if !slices.Contains(testsupport.Namespaces(t), nsName) {
		t.Fatalf("namespace %s missing after online", nsName)
	}
	if got := r.routes("-4", vif); len(got) != 1 || got[0].Dst != "10.137.0.20" {
		t.Errorf("routes = %+v, want the real address", got)
	}
	if got := r.elements("ip", "allowed"); !slices.Equal(got, []string{`"vif32001.0" . 10.137.0.20`}) {
		t.Errorf("allowed = %v", got)
	}
	if got := r.elements("ip6", "allowed"); len(got) != 0 {
		t.Errorf("ip6 allowed = %v, want none in NAT mode", got)
	}
	ping(t, c.NS, "203.0.113.1")
	// The netvm sees only the real address.
	out, err := r.sb.NetVM.Exec("conntrack", "-L", "-p", "icmp")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "src=10.137.0.20 ") || strings.Contains(string(out), "10.137.0.200") {
		t.Errorf("netvm conntrack does not show only the real address:\n%s", out)
	}

	r.mustHotplug(vif, 32001, 0, "online") // a restart: one namespace, still working
	ping(t, c.NS, "203.0.113.1")

	r.mustHotplug(vif, 32001, 0, "offline")
	if slices.Contains(testsupport.Namespaces(t), nsName) {
		t.Errorf("namespace %s left after offline", nsName)
	}
	if got := r.elements("ip", "allowed"); len(got) != 0 {
		t.Errorf("allowed after offline = %v", got)
	}
	r.mustHotplug(vif, 32001, 0, "offline") // already gone
}
