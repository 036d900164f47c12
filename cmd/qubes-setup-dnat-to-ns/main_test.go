package main

import (
	"bytes"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	fakeresolved "github.com/qubes-netvm/qnet/internal/fake/resolved"
	"github.com/qubes-netvm/qnet/internal/fake/systembus"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// binary is the command under test, built once by TestMain.
var binary string

func TestMain(m *testing.M) {
	testsupport.Main(m, testsupport.Build{Name: "qubes-setup-dnat-to-ns", Package: ".", Path: &binary})
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		stdout   string // substring expected on stdout
		stderr   string // substring expected on stderr
	}{
		{[]string{"--version"}, 0, "qubes-setup-dnat-to-ns ", ""},
		{[]string{"--help"}, 0, "", "--resolv-conf"},
		{[]string{"--no-such-flag"}, 1, "", "unknown flag"},
		{[]string{"extra"}, 1, "", "unexpected arguments"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(tt.args, &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stdout.String(), tt.stdout) || !strings.Contains(stderr.String(), tt.stderr) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, stdout.String(), stderr.String(), tt.wantCode, tt.stdout, tt.stderr)
		}
	}
	var stderr bytes.Buffer
	if run([]string{"--help"}, &bytes.Buffer{}, &stderr); strings.Contains(stderr.String(), "qubes-firewall-flag") {
		t.Error("--help shows the hidden test flag --qubes-firewall-flag")
	}
}

// env is one network qube with the inputs the binary reads.
type env struct {
	sb         *sandbox.Sandbox
	db         *fakeqdb.Server
	resolvConf string
	flag       string   // the qubes-firewall service flag path (absent unless created)
	lock       string   // the lock file serialising runs
	vars       []string // environment for the binary
}

func newEnv(t testing.TB, resolvConf string) *env {
	t.Helper()
	sb := testsupport.New(t, sandbox.Options{})
	dir := t.TempDir()
	db, socket := testsupport.QubesDB(t, map[string]string{
		"/qubes-netvm-primary-dns":   "10.139.1.1",
		"/qubes-netvm-secondary-dns": "10.139.1.2",
	})
	e := &env{
		sb:         sb,
		db:         db,
		resolvConf: filepath.Join(dir, "resolv.conf"),
		flag:       filepath.Join(dir, "qubes-firewall"),
		lock:       filepath.Join(dir, "lockdir", "lock"),
		vars:       []string{"QUBESDB_SOCKET=" + socket, "DBUS_SYSTEM_BUS_ADDRESS=unix:path=" + filepath.Join(dir, "no-bus")},
	}
	e.writeResolvConf(t, resolvConf)
	return e
}

func (e *env) writeResolvConf(t testing.TB, content string) {
	t.Helper()
	if err := os.WriteFile(e.resolvConf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (e *env) setBus(address string) {
	e.vars = append(e.vars, "DBUS_SYSTEM_BUS_ADDRESS="+address)
}

// command returns the binary as the network qube would run it.
func (e *env) command(args ...string) *exec.Cmd {
	args = append([]string{"netns", "exec", e.sb.NetVM.Name, binary,
		"--resolv-conf", e.resolvConf, "--qubes-firewall-flag", e.flag, "--bus-timeout", "500ms", "--lock-file", e.lock}, args...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), e.vars...)
	return cmd
}

// runBinary runs the binary once and returns its exit code and output.
func (e *env) runBinary(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := e.command(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if _, ok := err.(*exec.ExitError); !ok {
			t.Fatalf("run %v: %v", cmd.Args, err)
		}
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// chainJSON returns `nft -j list chain ip qubes dnat-dns` verbatim, or ""
// when the chain does not exist.
func chainJSON(t *testing.T, ns *sandbox.NS) string {
	t.Helper()
	out, err := ns.Exec("nft", "-j", "list", "chain", "ip", "qubes", "dnat-dns")
	if err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return ""
		}
		t.Fatalf("nft -j list chain: %v", err)
	}
	return string(out)
}

// chainRules returns the chain's rules as nft lists them.
func chainRules(t *testing.T, ns *sandbox.NS) []string {
	t.Helper()
	out, err := ns.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns")
	if err != nil {
		return nil
	}
	var rules []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "ip daddr") {
			rules = append(rules, line)
		}
	}
	return rules
}

func dnatRules(pairs ...string) []string {
	var rules []string
	for i := 0; i < len(pairs); i += 2 {
		verdict := "dnat to " + pairs[i+1]
		if pairs[i+1] == "drop" {
			verdict = "drop"
		}
		rules = append(rules, "ip daddr "+pairs[i]+" udp dport 53 "+verdict, "ip daddr "+pairs[i]+" tcp dport 53 "+verdict)
	}
	return rules
}

func TestOneShot(t *testing.T) {
	e := newEnv(t, "nameserver 198.51.100.53\nnameserver 198.51.100.54\n")
	ns := e.sb.NetVM

	code, stdout, stderr := e.runBinary(t, "--dry-run")
	if code != 0 || !strings.Contains(stdout, "ip daddr 10.139.1.2 tcp dport 53 dnat to 198.51.100.54") {
		t.Fatalf("--dry-run: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := chainJSON(t, ns); got != "" {
		t.Fatalf("--dry-run created the chain: %s", got)
	}

	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("first run: exit %d, want 0; stderr %s", code, stderr)
	}
	want := dnatRules("10.139.1.1", "198.51.100.53", "10.139.1.2", "198.51.100.54")
	if got := chainRules(t, ns); !equal(got, want) {
		t.Fatalf("rules %q, want %q", got, want)
	}
	before := chainJSON(t, ns)
	if code, _, stderr := e.runBinary(t); code != 100 {
		t.Fatalf("second run: exit %d, want 100; stderr %s", code, stderr)
	}
	if after := chainJSON(t, ns); after != before {
		t.Fatalf("second run changed the chain (handles included):\nbefore %s\nafter  %s", before, after)
	}

	// The same rules written by nft, as upstream's script writes them.
	script := "add table ip qubes\nadd chain ip qubes dnat-dns\ndelete chain ip qubes dnat-dns\n" +
		"table ip qubes {\nchain dnat-dns {\ntype nat hook prerouting priority dstnat; policy accept;\n" +
		strings.Join(want, "\n") + "\n}\n}\n"
	testsupport.LoadNft(t, ns, script)
	written := chainJSON(t, ns)
	if code, _, stderr := e.runBinary(t); code != 100 {
		t.Fatalf("run over an nft-written chain: exit %d, want 100; stderr %s", code, stderr)
	}
	if after := chainJSON(t, ns); after != written {
		t.Fatal("run over an nft-written identical chain changed it")
	}

	// A change with the qubes-firewall service enabled reloads it through
	// systemd on the system bus.
	address := systembus.StartBus(t)
	manager := systembus.StartManager(t, address)
	e.setBus(address)
	if err := os.WriteFile(e.flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.writeResolvConf(t, "nameserver 198.51.100.54\n")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("run after a DNS change: exit %d; stderr %s", code, stderr)
	}
	wantJob := systembus.Job{Method: "ReloadOrTryRestartUnit", Unit: "qubes-firewall.service", Mode: "replace"}
	if jobs := manager.PendingJobs(); len(jobs) != 1 || jobs[0] != wantJob {
		t.Fatalf("systemd jobs %+v, want only %+v", jobs, wantJob)
	}
	if got := chainRules(t, ns); !equal(got, dnatRules("10.139.1.1", "198.51.100.54", "10.139.1.2", "198.51.100.54")) {
		t.Fatalf("rules after the change: %q", got)
	}

	// Without QubesDB the run fails and leaves the chain alone.
	e.db.Close()
	kept := chainJSON(t, ns)
	if code, _, stderr := e.runBinary(t); code != 1 || !strings.Contains(stderr, "qubesdb.sock") {
		t.Fatalf("run without QubesDB: exit %d, stderr %q; want 1 and a message naming the socket", code, stderr)
	}
	if chainJSON(t, ns) != kept {
		t.Fatal("a failed run changed the chain")
	}
}

func equal(a, b []string) bool {
	return strings.Join(a, "\n") == strings.Join(b, "\n")
}

// addClient wires a client qube the way vif-route-qubes does (by hand:
// the test does not depend on that binary): vif in group 2 and up, a host
// route to the client, the gateway address on the vif, anti-spoofing set
// elements.
func addClient(t *testing.T, sb *sandbox.Sandbox) *sandbox.Client {
	t.Helper()
	c, err := sb.AddClient(sandbox.ClientSpec{Domid: 5, Devid: 0, IPv4: "10.137.0.5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"ip", "link", "set", c.Vif, "group", "2", "up"},
		{"ip", "route", "add", "10.137.0.5", "dev", c.Vif},
		{"ip", "addr", "add", sandbox.DefaultGateway + "/32", "dev", c.Vif},
		{"nft", "add element ip qubes allowed { \"" + c.Vif + "\" . 10.137.0.5 }"},
		{"nft", "add element ip qubes downstream { 10.137.0.5 }"},
	} {
		if out, err := sb.NetVM.Exec(args[0], args[1:]...); err != nil {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
	return c
}

// startResolvers starts a resolver upstream on each address.
func startResolvers(t *testing.T, sb *sandbox.Sandbox, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if err := sb.StartResolver(a); err != nil {
			t.Fatal(err)
		}
	}
}

// countUpstreamDNS installs, in the upstream namespace, a counter of every
// DNS packet of either family that reaches it from the network qube, and
// returns a function reading it.
func countUpstreamDNS(t *testing.T, sb *sandbox.Sandbox) func() int {
	t.Helper()
	rules := "table inet qnt_dns_count {\n chain in {\n type filter hook prerouting priority -300; policy accept;\n" +
		" iifname \"up0\" udp dport 53 counter\n iifname \"up0\" tcp dport 53 counter\n }\n}\n"
	testsupport.LoadNft(t, sb.Upstream, rules)
	return func() int {
		n, err := sb.Upstream.CounterPackets("table", "inet", "qnt_dns_count")
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
}

// expectAnswers checks that DNS over UDP and TCP to each virtual address
// reaches the resolver named with it.
func expectAnswers(t *testing.T, c *sandbox.Client, pairs ...string) {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		for _, tcp := range []bool{false, true} {
			got, err := sandbox.Query(c.NS, pairs[i], "whoami.test", tcp)
			if err != nil || got != pairs[i+1] {
				t.Fatalf("query %s (tcp %v): %q, %v; want an answer from %s", pairs[i], tcp, got, err, pairs[i+1])
			}
		}
	}
}

func TestDNSPackets(t *testing.T) {
	e := newEnv(t, "nameserver 198.51.100.53\nnameserver 198.51.100.54\n")
	startResolvers(t, e.sb, sandbox.Resolver1, sandbox.Resolver2)
	c := addClient(t, e.sb)
	upstreamDNS := countUpstreamDNS(t, e.sb)
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	expectAnswers(t, c, "10.139.1.1", sandbox.Resolver1, "10.139.1.2", sandbox.Resolver2)
	if n := upstreamDNS(); n == 0 {
		t.Fatal("the upstream counter saw no DNS packet although queries were answered")
	}

	// No upstream DNS at all: drop rules, no answer, nothing leaves.
	e.writeResolvConf(t, "# no IPv4 name server\nnameserver 2001:db8::53\n")
	if code, _, stderr := e.runBinary(t); code != 0 {
		t.Fatalf("exit %d; stderr %s", code, stderr)
	}
	expectNoLeak(t, c, upstreamDNS)
}

// expectNoLeak checks that DNS queries to the virtual addresses get no
// answer and that no DNS packet reaches the upstream.
func expectNoLeak(t *testing.T, c *sandbox.Client, upstreamDNS func() int) {
	t.Helper()
	before := upstreamDNS()
	for _, server := range []string{"10.139.1.1", "10.139.1.2"} {
		for _, tcp := range []bool{false, true} {
			if got, err := sandbox.Query(c.NS, server, "whoami.test", tcp); err == nil {
				t.Fatalf("query %s (tcp %v) answered %q with no upstream DNS", server, tcp, got)
			}
		}
	}
	if after := upstreamDNS(); after != before {
		t.Fatalf("%d DNS packets reached the upstream with no upstream DNS configured", after-before)
	}
}

// startWatch runs the binary with --watch in the network qube and stops it
// (SIGTERM, expecting exit 0) when the test ends.
func startWatch(t *testing.T, e *env) {
	t.Helper()
	cmd := e.command("--watch", "--verbose")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// ip netns exec execs the binary, so the signal reaches it.
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("watch exited with %v; its log:\n%s", err, stderr.String())
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("watch did not stop on SIGINT; its log:\n%s", stderr.String())
		}
		if t.Failed() {
			t.Logf("watch log:\n%s", stderr.String())
		}
	})
}

// TestWatch switches the upstream DNS in every supported way while the
// watch service runs, and checks that queries from a client reach the new
// resolver with nothing run by hand; latencies are logged.
func TestWatch(t *testing.T) {
	e := newEnv(t, "nameserver 198.51.100.53\n")
	startResolvers(t, e.sb, sandbox.Resolver1, sandbox.Resolver2)
	c := addClient(t, e.sb)
	upstreamDNS := countUpstreamDNS(t, e.sb)
	address := systembus.StartBus(t)
	e.setBus(address) // a bus, but resolved not running yet: resolv.conf counts
	startWatch(t, e)

	answeredBy := func(resolver string) func() bool {
		return func() bool {
			got, err := sandbox.Query(c.NS, "10.139.1.1", "whoami.test", false)
			return err == nil && got == resolver
		}
	}
	rulesAre := func(want []string) func() bool {
		return func() bool { return equal(chainRules(t, e.sb.NetVM), want) }
	}
	const deadline = 10 * time.Second // generous; the latencies are logged
	testsupport.WaitWithin(t, "initial rules", deadline, rulesAre(dnatRules("10.139.1.1", sandbox.Resolver1, "10.139.1.2", sandbox.Resolver1)))

	dir := filepath.Dir(e.resolvConf)
	swap := func(name string, act func(), resolver string) {
		t.Helper()
		act()
		chain := testsupport.WaitWithin(t, name+": chain", deadline, rulesAre(dnatRules("10.139.1.1", resolver, "10.139.1.2", resolver)))
		query := testsupport.WaitWithin(t, name+": query", deadline, answeredBy(resolver))
		t.Logf("%s: chain updated after %v, query answered by %s after %v more", name, chain.Round(time.Millisecond), resolver, query.Round(time.Millisecond))
	}
	swap("resolv.conf renamed over", func() {
		tmp := filepath.Join(dir, "resolv.conf.new")
		must(t, os.WriteFile(tmp, []byte("nameserver 198.51.100.54\n"), 0o644))
		must(t, os.Rename(tmp, e.resolvConf))
	}, sandbox.Resolver2)
	targets := filepath.Join(dir, "run")
	must(t, os.Mkdir(targets, 0o755))
	swap("resolv.conf replaced by a symlink", func() {
		must(t, os.WriteFile(filepath.Join(targets, "a.conf"), []byte("nameserver 198.51.100.53\n"), 0o644))
		must(t, os.Symlink("run/a.conf", e.resolvConf+".link"))
		must(t, os.Rename(e.resolvConf+".link", e.resolvConf))
	}, sandbox.Resolver1)
	swap("symlink target rewritten", func() {
		must(t, os.WriteFile(filepath.Join(targets, "a.conf"), []byte("nameserver 198.51.100.54\n"), 0o644))
	}, sandbox.Resolver2)
	swap("symlink swapped", func() {
		must(t, os.WriteFile(filepath.Join(targets, "b.conf"), []byte("nameserver 198.51.100.53\n"), 0o644))
		must(t, os.Symlink("run/b.conf", e.resolvConf+".link"))
		must(t, os.Rename(e.resolvConf+".link", e.resolvConf))
	}, sandbox.Resolver1)

	var fake *resolvedFake
	swap("systemd-resolved starts", func() {
		fake = startResolved(t, address, sandbox.Resolver2)
	}, sandbox.Resolver2)
	swap("resolved PropertiesChanged", func() { fake.set(sandbox.Resolver1) }, sandbox.Resolver1)

	fake.set() // no upstream DNS at all
	testsupport.WaitWithin(t, "drop rules", deadline, rulesAre(dnatRules("10.139.1.1", "drop", "10.139.1.2", "drop")))
	expectNoLeak(t, c, upstreamDNS)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestWatchNetlinkEvent covers a systemd-resolved that does not signal DNS
// changes (older systemd): the change is caught when the uplink's
// addresses change, which is when such a DNS change happens.
func TestWatchNetlinkEvent(t *testing.T) {
	e := newEnv(t, "")
	address := systembus.StartBus(t)
	fake := startSilentResolved(t, address, "192.0.2.1")
	e.setBus(address)
	startWatch(t, e)
	testsupport.WaitWithin(t, "initial rules", 10*time.Second, func() bool {
		return equal(chainRules(t, e.sb.NetVM), dnatRules("10.139.1.1", "192.0.2.1", "10.139.1.2", "192.0.2.1"))
	})
	fake.set("192.0.2.2") // no signal
	if out, err := e.sb.NetVM.Exec("ip", "addr", "add", "198.51.100.99/24", "dev", "eth0"); err != nil {
		t.Fatalf("ip addr add: %v %s", err, out)
	}
	took := testsupport.WaitWithin(t, "rules after an uplink address change", 10*time.Second, func() bool {
		return equal(chainRules(t, e.sb.NetVM), dnatRules("10.139.1.1", "192.0.2.2", "10.139.1.2", "192.0.2.2"))
	})
	t.Logf("rules updated %v after the address change", took.Round(time.Millisecond))
}

// resolvedFake is a fake systemd-resolved publishing global servers.
type resolvedFake struct{ r *fakeresolved.Resolved }

func globalServers(addrs []string) []fakeresolved.Server {
	var servers []fakeresolved.Server
	for _, a := range addrs {
		addr := netip.MustParseAddr(a)
		family := int32(2) // AF_INET
		if addr.Is6() {
			family = 10 // AF_INET6
		}
		servers = append(servers, fakeresolved.Server{Ifindex: 0, Family: family, Address: addr.AsSlice()})
	}
	return servers
}

// startResolved starts a resolved that signals changes, as current
// systemd does.
func startResolved(t *testing.T, address string, addrs ...string) *resolvedFake {
	return &resolvedFake{fakeresolved.Start(t, address, globalServers(addrs), true)}
}

// startSilentResolved starts a resolved that changes its servers without
// a signal.
func startSilentResolved(t *testing.T, address string, addrs ...string) *resolvedFake {
	return &resolvedFake{fakeresolved.Start(t, address, globalServers(addrs), false)}
}

func (f *resolvedFake) set(addrs ...string) { f.r.SetDNS(globalServers(addrs)) }
