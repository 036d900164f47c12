package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/fake/systembus"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// The IPv6 side of a client qube, as Qubes numbers it.
const (
	virtual6a = "fd09:24ef:4179::a8b:1"
	virtual6b = "fd09:24ef:4179::a8b:2"
	client4   = "10.137.0.6"
	client6   = "fd09:24ef:4179::a89:6"
	gateway6  = "fd09:24ef:4179::a8a:1"
)

// newEnv6 is newEnv with the IPv6 virtual DNS keys in QubesDB.
func newEnv6(t *testing.T, resolvConf string) *env {
	t.Helper()
	e := newEnv(t, resolvConf)
	e.db.Set("/qubes-netvm-primary-dns6", virtual6a)
	e.db.Set("/qubes-netvm-secondary-dns6", virtual6b)
	return e
}

// addDualClient wires a dual-stack client qube by hand, as vif-route-qubes
// does: vif in group 2 and up, host routes and neighbours, gateways on the
// vif, anti-spoofing elements of both families.
func addDualClient(t *testing.T, sb *sandbox.Sandbox) *sandbox.Client {
	t.Helper()
	c, err := sb.AddClient(sandbox.ClientSpec{Domid: 6, IPv4: client4, IPv6: client6, Gateway6: gateway6})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ip", "link", "set", c.Vif, "group", "2", "up"},
		{"ip", "neigh", "add", client4, "lladdr", c.Spec.MAC, "dev", c.Vif, "nud", "permanent"},
		{"ip", "neigh", "add", client6, "lladdr", c.Spec.MAC, "dev", c.Vif, "nud", "permanent"},
		{"ip", "route", "add", client4, "dev", c.Vif},
		{"ip", "route", "add", client6, "dev", c.Vif},
		{"ip", "addr", "add", sandbox.DefaultGateway + "/32", "dev", c.Vif},
		{"ip", "addr", "add", gateway6 + "/128", "dev", c.Vif, "nodad"},
		{"nft", `add element ip qubes allowed { "` + c.Vif + `" . ` + client4 + ` }; add element ip qubes downstream { ` + client4 + ` }; ` +
			`add element ip6 qubes allowed { "` + c.Vif + `" . ` + client6 + ` }; add element ip6 qubes downstream { ` + client6 + ` }`},
	} {
		if out, err := sb.NetVM.Exec(args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	return c
}

// chainRulesOf returns the rules of family's chain as nft lists them, nil
// when the chain does not exist.
func chainRulesOf(t *testing.T, ns *sandbox.NS, family, chain string) []string {
	t.Helper()
	out, err := ns.Exec("nft", "list", "chain", family, "qubes", chain)
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return nil
		}
		t.Fatalf("nft list chain %s qubes %s: %v", family, chain, err)
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, family+" daddr") {
			rules = append(rules, line)
		}
	}
	return rules
}

// rulesFor returns the udp and tcp rules of family for each virtual
// address and its verdict ("drop", "reject" or a server to dnat to).
func rulesFor(family string, pairs ...string) []string {
	var rules []string
	for i := 0; i < len(pairs); i += 2 {
		udp, tcp := "dnat to "+pairs[i+1], "dnat to "+pairs[i+1]
		switch pairs[i+1] {
		case "drop":
			udp, tcp = "drop", "drop"
		case "reject":
			udp, tcp = "reject", "reject with tcp reset"
		}
		prefix := family + " daddr " + pairs[i]
		rules = append(rules, prefix+" udp dport 53 "+udp, prefix+" tcp dport 53 "+tcp)
	}
	return rules
}

// captureUplink captures DNS on the network qube's uplink, stopped at the
// end of the test at the latest.
func captureUplink(t *testing.T, sb *sandbox.Sandbox) *sandbox.Capture {
	t.Helper()
	c, err := sb.NetVM.StartCapture("eth0", "port 53")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = c.Stop() })
	return c
}

// expectRefused checks that a query to server gets an immediate error
// from the network: connection refused, which the client's kernel reports
// for an ICMP(v6) port unreachable (UDP) or a TCP reset. A query that is
// dropped would instead run into the query timeout.
func expectRefused(t *testing.T, c *sandbox.Client, server string) {
	t.Helper()
	for _, tcp := range []bool{false, true} {
		start := time.Now()
		got, err := sandbox.Query(c.NS, server, "whoami.test", tcp)
		if !errors.Is(err, syscall.ECONNREFUSED) {
			t.Fatalf("query %s (tcp %v) = %q, %v; want connection refused (ICMP unreachable or TCP reset)", server, tcp, got, err)
		}
		t.Logf("query %s (tcp %v) refused after %v", server, tcp, time.Since(start).Round(time.Microsecond))
	}
}

// onlyServers checks that every captured DNS packet is to or from one of
// servers (the uplink side of the DNAT) and that there are some.
func onlyServers(t *testing.T, packets []string, servers ...string) {
	t.Helper()
	if len(packets) == 0 {
		t.Fatal("the uplink capture saw no DNS packet although queries were answered")
	}
	for _, p := range packets {
		ok := false
		for _, s := range servers {
			ok = ok || strings.Contains(p, " "+s+".53")
		}
		if !ok {
			t.Errorf("uplink packet not to or from %v: %s", servers, p)
		}
	}
}

// TestIPv6DualStack: a dual-stack client queries both families' virtual
// addresses over UDP and TCP and is answered by the resolvers of its
// family; the uplink sees only the real servers.
func TestIPv6DualStack(t *testing.T) {
	e := newEnv6(t, "nameserver "+sandbox.Resolver1+"\nnameserver "+sandbox.Resolver6a+"\nnameserver "+sandbox.Resolver6b+"\nnameserver fe80::1%eth0\n")
	startResolvers(t, e.sb, sandbox.Resolver1, sandbox.Resolver6a, sandbox.Resolver6b)
	c := addDualClient(t, e.sb)
	capture := captureUplink(t, e.sb)

	code, stdout, stderr := e.runBinary(t, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "table ip6 qubes {") || !strings.Contains(stdout, "ip6 daddr "+virtual6b+" tcp dport 53 dnat to "+sandbox.Resolver6b) {
		t.Fatalf("--dry-run: exit %d, stdout %q, stderr %q; want both chains", code, stdout, stderr)
	}
	code, _, stderr = e.runBinary(t)
	if code != 0 || !strings.Contains(stderr, "fe80::1%eth0") {
		t.Fatalf("exit %d, stderr %s; want 0 and a log line naming the link-local server", code, stderr)
	}
	ns := e.sb.NetVM
	if got, want := chainRulesOf(t, ns, "ip6", "dnat-dns"), rulesFor("ip6", virtual6a, sandbox.Resolver6a, virtual6b, sandbox.Resolver6b); !equal(got, want) {
		t.Fatalf("ip6 rules %q, want %q", got, want)
	}
	if got, want := chainRulesOf(t, ns, "ip", "dnat-dns"), rulesFor("ip", "10.139.1.1", sandbox.Resolver1, "10.139.1.2", sandbox.Resolver1); !equal(got, want) {
		t.Fatalf("ip rules %q, want %q", got, want)
	}
	for _, family := range []string{"ip", "ip6"} {
		if got := chainRulesOf(t, ns, family, "dnat-dns-reject"); got != nil {
			t.Fatalf("%s dnat-dns-reject holds %q with servers of both families", family, got)
		}
	}
	if code, _, stderr := e.runBinary(t); code != 100 {
		t.Fatalf("second run: exit %d, want 100; stderr %s", code, stderr)
	}
	expectAnswers(t, c, virtual6a, sandbox.Whoami(sandbox.Resolver6a), virtual6b, sandbox.Whoami(sandbox.Resolver6b),
		"10.139.1.1", sandbox.Resolver1)
	// Four exchanges to the IPv6 servers and two to the IPv4 one, each
	// at least a query and its answer.
	testsupport.WaitWithin(t, "answers in the uplink capture", 5*time.Second, func() bool { return len(capture.Seen()) >= 12 })
	packets, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	onlyServers(t, packets, sandbox.Resolver6a, sandbox.Resolver6b, sandbox.Resolver1)

	// A change in the IPv6 family alone is a change (exit 0), applied.
	e.writeResolvConf(t, "nameserver "+sandbox.Resolver1+"\nnameserver "+sandbox.Resolver6b+"\n")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("run after an IPv6-only change: exit %d, want 0; stderr %s", code, stderr)
	}
	if got, want := chainRulesOf(t, ns, "ip6", "dnat-dns"), rulesFor("ip6", virtual6a, sandbox.Resolver6b, virtual6b, sandbox.Resolver6b); !equal(got, want) {
		t.Fatalf("ip6 rules after the change %q, want %q", got, want)
	}

	// The keys removed: back to IPv4 only, the IPv6 chain gone.
	e.db.Delete("/qubes-netvm-primary-dns6")
	e.db.Delete("/qubes-netvm-secondary-dns6")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("run without the IPv6 keys: exit %d; stderr %s", code, stderr)
	}
	if got := chainRulesOf(t, ns, "ip6", "dnat-dns"); got != nil {
		t.Fatalf("ip6 dnat-dns still holds %q without the IPv6 keys", got)
	}
	if _, err := ns.Exec("nft", "list", "chain", "ip6", "qubes", "dnat-dns"); err == nil {
		t.Fatal("ip6 dnat-dns still exists without the IPv6 keys")
	}
}

// TestIPv6WithoutIPv6Upstream: only IPv4 servers. Queries to the IPv6
// virtual addresses are refused at once and leak nowhere; IPv4 works.
func TestIPv6WithoutIPv6Upstream(t *testing.T) {
	e := newEnv6(t, "nameserver "+sandbox.Resolver1+"\nnameserver "+sandbox.Resolver2+"\n")
	startResolvers(t, e.sb, sandbox.Resolver1, sandbox.Resolver2)
	c := addDualClient(t, e.sb)
	upstreamDNS := countUpstreamDNS(t, e.sb)
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	ns := e.sb.NetVM
	if got, want := chainRulesOf(t, ns, "ip6", "dnat-dns-reject"), rulesFor("ip6", virtual6a, "reject", virtual6b, "reject"); !equal(got, want) {
		t.Fatalf("ip6 dnat-dns-reject rules %q, want %q", got, want)
	}
	if got := chainRulesOf(t, ns, "ip", "dnat-dns-reject"); got != nil {
		t.Fatalf("ip dnat-dns-reject holds %q with IPv4 servers", got)
	}
	capture := captureUplink(t, e.sb)
	before := upstreamDNS()
	expectRefused(t, c, virtual6a)
	expectRefused(t, c, virtual6b)
	if after := upstreamDNS(); after != before {
		t.Fatalf("%d DNS packets reached the upstream for refused IPv6 queries", after-before)
	}
	expectAnswers(t, c, "10.139.1.1", sandbox.Resolver1, "10.139.1.2", sandbox.Resolver2)
	testsupport.WaitWithin(t, "IPv4 answers in the uplink capture", 5*time.Second, func() bool { return len(capture.Seen()) >= 8 })
	packets, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	onlyServers(t, packets, sandbox.Resolver1, sandbox.Resolver2)
}

// TestIPv6OnlyUpstream: only IPv6 servers (an IPv6-only uplink). The IPv6
// virtual addresses answer, the IPv4 ones are refused at once, no leak.
func TestIPv6OnlyUpstream(t *testing.T) {
	e := newEnv6(t, "nameserver "+sandbox.Resolver6a+"\n")
	startResolvers(t, e.sb, sandbox.Resolver6a)
	c := addDualClient(t, e.sb)
	upstreamDNS := countUpstreamDNS(t, e.sb)
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	ns := e.sb.NetVM
	if got, want := chainRulesOf(t, ns, "ip", "dnat-dns-reject"), rulesFor("ip", "10.139.1.1", "reject", "10.139.1.2", "reject"); !equal(got, want) {
		t.Fatalf("ip dnat-dns-reject rules %q, want %q", got, want)
	}
	if got := chainRulesOf(t, ns, "ip", "dnat-dns"); got != nil {
		t.Fatalf("ip dnat-dns holds %q with no IPv4 server", got)
	}
	capture := captureUplink(t, e.sb)
	before := upstreamDNS()
	expectRefused(t, c, "10.139.1.1")
	expectRefused(t, c, "10.139.1.2")
	if after := upstreamDNS(); after != before {
		t.Fatalf("%d DNS packets reached the upstream for refused IPv4 queries", after-before)
	}
	expectAnswers(t, c, virtual6a, sandbox.Whoami(sandbox.Resolver6a), virtual6b, sandbox.Whoami(sandbox.Resolver6a))
	testsupport.WaitWithin(t, "IPv6 answers in the uplink capture", 5*time.Second, func() bool { return len(capture.Seen()) >= 8 })
	packets, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	onlyServers(t, packets, sandbox.Resolver6a)

	// No server at all: both families refused, still no leak.
	e.writeResolvConf(t, "")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	before = upstreamDNS()
	for _, v := range []string{"10.139.1.1", virtual6a} {
		expectRefused(t, c, v)
	}
	if after := upstreamDNS(); after != before {
		t.Fatalf("%d DNS packets reached the upstream with no server", after-before)
	}
}

// TestWatchIPv6 switches the IPv6 servers with --watch running.
func TestWatchIPv6(t *testing.T) {
	e := newEnv6(t, "nameserver "+sandbox.Resolver1+"\nnameserver "+sandbox.Resolver6a+"\n")
	startResolvers(t, e.sb, sandbox.Resolver1, sandbox.Resolver6a, sandbox.Resolver6b)
	c := addDualClient(t, e.sb)
	address := systembus.StartBus(t)
	e.setBus(address) // a bus, but resolved not running yet: resolv.conf counts
	startWatch(t, e)
	answeredBy := func(resolver string) func() bool {
		return func() bool {
			got, err := sandbox.Query(c.NS, virtual6a, "whoami.test", false)
			return err == nil && got == sandbox.Whoami(resolver)
		}
	}
	const deadline = 10 * time.Second
	testsupport.WaitWithin(t, "first IPv6 server answers", deadline, answeredBy(sandbox.Resolver6a))
	e.writeResolvConf(t, "nameserver "+sandbox.Resolver1+"\nnameserver "+sandbox.Resolver6b+"\n")
	took := testsupport.WaitWithin(t, "new IPv6 server answers", deadline, answeredBy(sandbox.Resolver6b))
	t.Logf("IPv6 server switch followed after %v", took.Round(time.Millisecond))

	// resolved as the source: its family 10 entries count.
	fake := startResolved(t, address, sandbox.Resolver1, sandbox.Resolver6a)
	testsupport.WaitWithin(t, "resolved's IPv6 server answers", deadline, answeredBy(sandbox.Resolver6a))
	fake.set(sandbox.Resolver1)
	testsupport.WaitWithin(t, "IPv6 refused without an IPv6 server", deadline, func() bool {
		_, err := sandbox.Query(c.NS, virtual6a, "whoami.test", false)
		return errors.Is(err, syscall.ECONNREFUSED)
	})
}

// TestNoIPv6KeysLeavesIPv6Alone: without the IPv6 keys a run, even with
// IPv6 servers known, leaves table ip6 qubes exactly as it was and adds
// no reject chain to table ip qubes.
func TestNoIPv6KeysLeavesIPv6Alone(t *testing.T) {
	e := newEnv(t, "nameserver "+sandbox.Resolver6a+"\n")
	ns := e.sb.NetVM
	before, err := ns.Exec("nft", "-j", "list", "table", "ip6", "qubes")
	if err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	after, err := ns.Exec("nft", "-j", "list", "table", "ip6", "qubes")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("table ip6 qubes changed without the IPv6 keys:\nbefore %s\nafter  %s", before, after)
	}
	if got, want := chainRules(t, ns), dnatRules("10.139.1.1", "drop", "10.139.1.2", "drop"); !equal(got, want) {
		t.Fatalf("rules %q, want today's drop rules %q", got, want)
	}
	if _, err := ns.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns-reject"); err == nil {
		t.Fatal("a reject chain exists without the IPv6 keys")
	}
}
