package vif_test

import (
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/pkg/vif"
)

// trackAll makes the network qube track every flow, without filtering.
const trackAll = `table inet track {
	chain pre { type filter hook prerouting priority 0; ct state new counter; }
	chain out { type filter hook output priority 0; ct state new counter; }
}`

// entries lists the network qube's conntrack table as the conntrack tool
// prints it, one flow a line.
func entries(t *testing.T, s *sandbox.Sandbox) []string {
	t.Helper()
	var all []string
	for _, fam := range []string{"ipv4", "ipv6"} {
		out, err := s.NetVM.Exec("conntrack", "-L", "-f", fam)
		if err != nil {
			t.Fatalf("conntrack -L -f %s: %v", fam, err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if l != "" {
				all = append(all, l)
			}
		}
	}
	return all
}

// original returns the original direction's src and dst of a conntrack line.
func original(line string) (src, dst string) {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "src="); ok && src == "" {
			src = v
		}
		if v, ok := strings.CutPrefix(f, "dst="); ok && dst == "" {
			dst = v
		}
	}
	return src, dst
}

func ping(t *testing.T, ns *sandbox.NS, args ...string) {
	t.Helper()
	// The first IPv6 echo can be lost to neighbour discovery: -w keeps
	// sending until one is answered.
	if out, err := ns.Exec("ping", append([]string{"-c", "1", "-w", "5", "-i", "0.2"}, args...)...); err != nil {
		t.Fatalf("ping %v: %v\n%s", args, err, out)
	}
}

// Real flows in both directions and both families: the "client" is the
// internet host (its address the one purged); the router's own address
// stands for everyone else, whose flows must survive.
func TestPurgeRealFlows(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	s, err := sandbox.New(sandbox.Options{NoBaseRuleset: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if out, err := s.NetVM.Exec("nft", trackAll); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	// From the network qube to the client and to the router ...
	ping(t, s.NetVM, sandbox.InternetHost)
	ping(t, s.NetVM, sandbox.InternetHost6)
	ping(t, s.NetVM, sandbox.UpstreamAddr)
	ping(t, s.NetVM, sandbox.UpstreamAddr6)
	// ... and from the client and the router to the network qube.
	ping(t, s.Upstream, "-I", sandbox.InternetHost, sandbox.UplinkAddr)
	ping(t, s.Upstream, "-I", sandbox.InternetHost6, sandbox.UplinkAddr6)
	ping(t, s.Upstream, "-I", sandbox.UpstreamAddr, sandbox.UplinkAddr)
	ping(t, s.Upstream, "-I", sandbox.UpstreamAddr6, sandbox.UplinkAddr6)

	client := map[string]bool{sandbox.InternetHost: true, sandbox.InternetHost6: true}
	isClient := func(l string) bool { src, dst := original(l); return client[src] || client[dst] }
	var before []string
	nClient := 0
	for _, l := range entries(t, s) {
		if isClient(l) {
			nClient++
		} else {
			before = append(before, l)
		}
	}
	if nClient != 4 || len(before) < 4 {
		t.Fatalf("want 4 client flows and at least 4 others, have:\n%s", strings.Join(entries(t, s), "\n"))
	}

	var deleted int
	err = s.NetVM.Do(func() error {
		c, err := nfnl.Dial(0)
		if err != nil {
			return err
		}
		defer c.Close()
		deleted, err = vif.PurgeConnections(c, []netip.Addr{netip.MustParseAddr(sandbox.InternetHost), netip.MustParseAddr(sandbox.InternetHost6)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if deleted != 4 {
		t.Errorf("PurgeConnections deleted %d entries, want 4", deleted)
	}
	after := entries(t, s)
	kept := 0
	for _, l := range after {
		if isClient(l) {
			t.Errorf("client entry left: %s", l)
			continue
		}
		kept++
	}
	if kept < len(before) {
		t.Errorf("unrelated entries lost: before\n%s\nafter\n%s", strings.Join(before, "\n"), strings.Join(after, "\n"))
	}
}
