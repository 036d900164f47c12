package sandbox_test

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

const (
	clientIP   = "10.137.0.5"
	clientIP6  = "fd09:24ef:4179::a89:5"
	gatewayIP6 = "fd09:24ef:4179::a8a:1"
	clientMAC  = "00:16:3e:5e:6c:05"
)

// pingFails asserts that a single ping gets no reply.
func pingFails(t *testing.T, ns *sandbox.NS, target string, extra ...string) {
	t.Helper()
	if _, err := ns.Exec("ping", append([]string{"-c1", "-W1"}, append(extra, target)...)...); err == nil {
		t.Fatalf("ping %s %v from %s got a reply, want none", target, extra, ns.Name)
	}
}

// antispoofDrops is NS.AntispoofDrops for tests.
func antispoofDrops(t *testing.T, netvm *sandbox.NS, family string) uint64 {
	t.Helper()
	n, err := netvm.AntispoofDrops(family)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestHandConfiguredNetVMForwardsAndFilters wires one dual-stack client the
// way the hotplug script does, with ip and nft by hand, and proves the
// topology and the base ruleset with real packets.
func TestHandConfiguredNetVMForwardsAndFilters(t *testing.T) {
	s := testsupport.New(t, sandbox.Options{})
	c, err := s.AddClient(sandbox.ClientSpec{Domid: 5, IPv4: clientIP, IPv6: clientIP6, Gateway6: gatewayIP6})
	if err != nil {
		t.Fatal(err)
	}
	if c.Vif != "vif5.0" || c.Spec.MAC != clientMAC || c.Spec.Gateway != sandbox.DefaultGateway {
		t.Fatalf("client = %+v, want vif5.0 with MAC %s and gateway %s", c, clientMAC, sandbox.DefaultGateway)
	}
	netvm := s.NetVM
	if err := netvm.SetSysctl("net/ipv4/conf/vif5.0/proxy_arp", "1"); err != nil {
		t.Fatal(err)
	}
	testsupport.MustRun(t, netvm, "nft", fmt.Sprintf(`add element ip qubes allowed { "vif5.0" . %s }; add element ip qubes downstream { %s };`+
		`add element ip6 qubes allowed { "vif5.0" . %s }; add element ip6 qubes downstream { %s }`, clientIP, clientIP, clientIP6, clientIP6))
	testsupport.MustRun(t, netvm, "ip", "neigh", "add", clientIP, "lladdr", clientMAC, "dev", "vif5.0", "nud", "permanent")
	testsupport.MustRun(t, netvm, "ip", "neigh", "add", clientIP6, "lladdr", clientMAC, "dev", "vif5.0", "nud", "permanent")
	testsupport.MustRun(t, netvm, "ip", "link", "set", "vif5.0", "group", "2", "up")
	testsupport.MustRun(t, netvm, "ip", "route", "add", clientIP, "dev", "vif5.0", "metric", "32747")
	testsupport.MustRun(t, netvm, "ip", "route", "add", clientIP6, "dev", "vif5.0", "metric", "32747")
	testsupport.MustRun(t, netvm, "ip", "addr", "add", sandbox.DefaultGateway+"/32", "dev", "vif5.0")
	testsupport.MustRun(t, netvm, "ip", "addr", "add", gatewayIP6+"/128", "dev", "vif5.0", "nodad")
	if err := netvm.SetSysctl("net/ipv6/conf/vif5.0/proxy_ndp", "1"); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ family, want string }{
		{"ip", `"vif5.0" . ` + clientIP},
		{"ip6", `"vif5.0" . ` + clientIP6},
	} {
		got, err := netvm.SetElements(tc.family, "qubes", "allowed")
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, []string{tc.want}) {
			t.Errorf("%s qubes allowed = %q, want [%q]", tc.family, got, tc.want)
		}
	}
	if got, err := netvm.Sysctl("net/ipv4/conf/vif5.0/proxy_arp"); err != nil || got != "1" {
		t.Errorf("proxy_arp = %q, %v; want 1", got, err)
	}

	for _, target := range []string{sandbox.DefaultGateway, sandbox.InternetHost, gatewayIP6, sandbox.InternetHost6} {
		testsupport.AwaitPing(t, c.NS, target)
	}

	spoofs := []struct {
		family, source, target string
	}{
		{"ip", "10.137.0.99/32", sandbox.InternetHost},
		{"ip6", "fd09:24ef:4179::a89:99/128", sandbox.InternetHost6},
	}
	for _, tc := range spoofs {
		t.Run("spoofed "+tc.family, func(t *testing.T) {
			addrArgs := []string{"addr", "add", tc.source, "dev", "eth0"}
			if tc.family == "ip6" {
				addrArgs = append(addrArgs, "nodad")
			}
			testsupport.MustRun(t, c.NS, "ip", addrArgs...)
			source, _, _ := strings.Cut(tc.source, "/")
			before := antispoofDrops(t, netvm, tc.family)
			pingFails(t, c.NS, tc.target, "-I", source)
			if after := antispoofDrops(t, netvm, tc.family); after <= before {
				t.Errorf("%s antispoof drops %d -> %d, want a rise", tc.family, before, after)
			}
		})
	}

	testsupport.MustRun(t, netvm, "nft", fmt.Sprintf(`delete element ip qubes allowed { "vif5.0" . %s }; delete element ip6 qubes allowed { "vif5.0" . %s }`, clientIP, clientIP6))
	for _, tc := range []struct{ family, target string }{
		{"ip", sandbox.DefaultGateway},
		{"ip6", gatewayIP6},
	} {
		before := antispoofDrops(t, netvm, tc.family)
		pingFails(t, c.NS, tc.target)
		if after := antispoofDrops(t, netvm, tc.family); after <= before {
			t.Errorf("after removing the %s element: antispoof drops %d -> %d, want a rise", tc.family, before, after)
		}
	}
}

// TestClientVifAsXenHandsIt checks both ends of a client's veth pair, a
// deferred vif, deleting it and the IPv6 switch.
func TestClientVifAsXenHandsIt(t *testing.T) {
	s := testsupport.New(t, sandbox.Options{NoBaseRuleset: true})
	c, err := s.AddClient(sandbox.ClientSpec{Domid: 12, Devid: 1, IPv4: "10.137.0.12", DeferVif: true, DisableIPv6OnVif: true})
	if err != nil {
		t.Fatal(err)
	}
	type link struct {
		Ifname    string   `json:"ifname"`
		Flags     []string `json:"flags"`
		Group     string   `json:"group"`
		Address   string   `json:"address"`
		Operstate string   `json:"operstate"`
		AddrInfo  []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	find := func(ns *sandbox.NS, name string) *link {
		t.Helper()
		var links []link
		if err := ns.IPJSON(&links, "addr", "show"); err != nil {
			t.Fatal(err)
		}
		for i := range links {
			if links[i].Ifname == name {
				return &links[i]
			}
		}
		return nil
	}
	if l := find(s.NetVM, "vif12.1"); l != nil {
		t.Fatalf("deferred vif exists before CreateVif: %+v", l)
	}
	if err := c.CreateVif(); err != nil {
		t.Fatal(err)
	}
	vif := find(s.NetVM, "vif12.1")
	if vif == nil {
		t.Fatal("vif12.1 missing in the netvm after CreateVif")
	}
	if vif.Address != "fe:ff:ff:ff:ff:ff" || slices.Contains(vif.Flags, "UP") || vif.Group != "default" || len(vif.AddrInfo) != 0 {
		t.Errorf("netvm end = %+v, want MAC fe:ff:ff:ff:ff:ff, down, group default, no address", vif)
	}
	if got, err := s.NetVM.Sysctl("net/ipv6/conf/vif12.1/disable_ipv6"); err != nil || got != "1" {
		t.Errorf("disable_ipv6 on vif12.1 = %q, %v; want 1", got, err)
	}
	eth0 := find(c.NS, "eth0")
	if eth0 == nil || eth0.Address != "00:16:3e:5e:6c:0c" || !slices.Contains(eth0.Flags, "UP") {
		t.Fatalf("client end = %+v, want eth0 up with MAC 00:16:3e:5e:6c:0c", eth0)
	}
	if !slices.ContainsFunc(eth0.AddrInfo, func(a struct {
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
	}) bool {
		return a.Local == "10.137.0.12" && a.Prefixlen == 32
	}) {
		t.Errorf("client eth0 addresses = %+v, want 10.137.0.12/32", eth0.AddrInfo)
	}
	var routes []struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}
	if err := c.NS.IPJSON(&routes, "route", "show"); err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r struct {
		Dst     string `json:"dst"`
		Gateway string `json:"gateway"`
	}) bool {
		return r.Dst == "default" && r.Gateway == sandbox.DefaultGateway
	}) {
		t.Errorf("client routes = %+v, want default via %s", routes, sandbox.DefaultGateway)
	}

	if err := c.DeleteVif(); err != nil {
		t.Fatal(err)
	}
	if l := find(s.NetVM, "vif12.1"); l != nil {
		t.Errorf("vif12.1 still in the netvm after DeleteVif: %+v", l)
	}
	if err := c.CreateVif(); err != nil {
		t.Fatalf("CreateVif after DeleteVif: %v", err)
	}
}

// TestResolverAnswersOverUDPAndTCP queries both resolvers from the network
// qube, across the uplink, and checks each answers with its own address.
func TestResolverAnswersOverUDPAndTCP(t *testing.T) {
	s := testsupport.New(t, sandbox.Options{})
	for _, addr := range []string{sandbox.Resolver1, sandbox.Resolver2} {
		if err := s.StartResolver(addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.StartResolver(sandbox.Resolver1); err == nil {
		t.Error("second StartResolver on the same address succeeded, want an error")
	}
	for _, server := range []string{sandbox.Resolver1, sandbox.Resolver2} {
		for _, tcp := range []bool{false, true} {
			for name, want := range map[string]string{"whoami.test": server, "host.test": sandbox.InternetHost} {
				t.Run(fmt.Sprintf("%s tcp=%v %s", server, tcp, name), func(t *testing.T) {
					got, err := sandbox.Query(s.NetVM, server, name, tcp)
					if err != nil {
						t.Fatal(err)
					}
					if got != want {
						t.Errorf("answer = %s, want %s", got, want)
					}
				})
			}
		}
	}
	if got, err := sandbox.Query(s.NetVM, sandbox.Resolver1, "unknown.test", false); err == nil {
		t.Errorf("unknown.test resolved to %s, want an error", got)
	}
	if err := s.StopResolver(sandbox.Resolver2); err != nil {
		t.Fatal(err)
	}
	if got, err := sandbox.Query(s.NetVM, sandbox.Resolver2, "whoami.test", true); err == nil {
		t.Errorf("stopped resolver answered %s", got)
	}
	if err := s.StopResolver(sandbox.Resolver2); err == nil {
		t.Error("StopResolver of a stopped resolver succeeded, want an error")
	}
}

// ownNamespaces lists the namespaces this test process created.
func ownNamespaces(t *testing.T) []string {
	t.Helper()
	prefix := fmt.Sprintf("qnt%dx", os.Getpid())
	var names []string
	for _, name := range testsupport.Namespaces(t) {
		if strings.HasPrefix(name, prefix) {
			names = append(names, name)
		}
	}
	return names
}

// TestCloseLeavesNothing closes a sandbox with a client and a running
// resolver and finds no namespace or process of it afterwards.
func TestCloseLeavesNothing(t *testing.T) {
	testsupport.RequireRoot(t)
	before := ownNamespaces(t)
	s, err := sandbox.New(sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.AddClient(sandbox.ClientSpec{Domid: 7, IPv4: "10.137.0.7"}); err != nil {
		t.Fatal(err)
	}
	if err := s.StartResolver(sandbox.Resolver1); err != nil {
		t.Fatal(err)
	}
	pidsOut, err := exec.Command("ip", "netns", "pids", s.Upstream.Name).Output()
	if err != nil {
		t.Fatal(err)
	}
	pids := strings.Fields(string(pidsOut))
	if len(pids) == 0 {
		t.Fatal("no process in the upstream namespace while a resolver runs")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if after := ownNamespaces(t); !slices.Equal(before, after) {
		t.Errorf("namespaces before New %q, after Close %q", before, after)
	}
	for _, p := range pids {
		var pid int
		fmt.Sscan(p, &pid)
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d of the upstream namespace survived Close", pid)
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRemoveLeftoversSparesLiveRuns makes namespaces and temporary
// directories named after a dead process (a client's among them, with the
// NAT namespace of its vif, and a process inside the netvm's), the same
// named after this live process, and a kept sandbox's of the dead process:
// RemoveLeftovers removes the first (killing its process) and keeps the
// others; RemoveKept then removes the kept one.
func TestRemoveLeftoversSparesLiveRuns(t *testing.T) {
	testsupport.RequireRoot(t)
	exited := exec.Command("true")
	if err := exited.Run(); err != nil {
		t.Fatal(err)
	}
	dead := fmt.Sprintf("qnt%dx1-netvm", exited.Process.Pid)
	deadClient := fmt.Sprintf("qnt%dx1-c32701x0", exited.Process.Pid)
	deadNAT := "vif32701.0-nat"
	live := fmt.Sprintf("qnt%dx999999-netvm", os.Getpid())
	kept := fmt.Sprintf("qnk%dx1-netvm", exited.Process.Pid)
	for _, name := range []string{dead, deadClient, deadNAT, live, kept} {
		if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", name, err, out)
		}
		t.Cleanup(func() { testsupport.DeleteNamespace(t, name) })
	}
	// Named as New names its temporary directory: the sandbox ID and "-".
	tempDir := func(name string) string {
		dir, err := os.MkdirTemp("", strings.TrimSuffix(name, "netvm"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		return dir
	}
	deadDir, liveDir, keptDir := tempDir(dead), tempDir(live), tempDir(kept)
	exist := func(paths ...string) map[string]bool {
		m := map[string]bool{}
		for _, p := range paths {
			_, err := os.Stat(p)
			m[p] = err == nil
		}
		return m
	}
	ns := func(name string) string { return "/run/netns/" + name }
	sleeper := exec.Command("ip", "netns", "exec", dead, "sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	sleeperDone := make(chan error, 1)
	go func() { sleeperDone <- sleeper.Wait() }()
	t.Cleanup(func() { _ = sleeper.Process.Kill() })

	// The sleeper only counts once it runs inside the namespace.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "pids", dead).Output()
		if slices.Contains(strings.Fields(string(out)), fmt.Sprint(sleeper.Process.Pid)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sleeper %d never showed up in %s", sleeper.Process.Pid, dead)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := sandbox.RemoveLeftovers(); err != nil {
		t.Fatal(err)
	}
	paths := []string{ns(dead), ns(deadClient), ns(deadNAT), deadDir, ns(live), liveDir, ns(kept), keptDir}
	want := map[string]bool{ns(live): true, liveDir: true, ns(kept): true, keptDir: true}
	for p, there := range exist(paths...) {
		if there != want[p] {
			t.Errorf("after RemoveLeftovers %s exists: %v, want %v", p, there, want[p])
		}
	}
	if err := sandbox.RemoveKept(); err != nil {
		t.Fatal(err)
	}
	want[ns(kept)], want[keptDir] = false, false
	for p, there := range exist(paths...) {
		if there != want[p] {
			t.Errorf("after RemoveKept %s exists: %v, want %v", p, there, want[p])
		}
	}
	select {
	case <-sleeperDone:
	case <-time.After(10 * time.Second):
		t.Errorf("process %d in the leftover namespace was not killed", sleeper.Process.Pid)
	}
}

// TestIPv6ResolverAndCapture queries an IPv6 resolver from the network
// qube across the uplink, over UDP and TCP, and checks that the uplink
// capture shows the exchange with that resolver.
func TestIPv6ResolverAndCapture(t *testing.T) {
	s := testsupport.New(t, sandbox.Options{})
	if err := s.StartResolver(sandbox.Resolver6a); err != nil {
		t.Fatal(err)
	}
	if err := s.StartResolver("fe80::1%lo"); err == nil {
		t.Error("StartResolver accepted a zoned address")
	}
	capture, err := s.NetVM.StartCapture("eth0", "port 53")
	if err != nil {
		t.Fatal(err)
	}
	for _, tcp := range []bool{false, true} {
		got, err := sandbox.Query(s.NetVM, sandbox.Resolver6a, "whoami.test", tcp)
		if err != nil || got != sandbox.Whoami(sandbox.Resolver6a) {
			t.Fatalf("query %s (tcp %v) = %q, %v; want %s", sandbox.Resolver6a, tcp, got, err, sandbox.Whoami(sandbox.Resolver6a))
		}
	}
	if sandbox.Whoami(sandbox.Resolver1) != sandbox.Resolver1 || sandbox.Whoami(sandbox.Resolver6a) != "192.0.2.1" {
		t.Fatalf("Whoami(%s) = %s, Whoami(%s) = %s", sandbox.Resolver1, sandbox.Whoami(sandbox.Resolver1), sandbox.Resolver6a, sandbox.Whoami(sandbox.Resolver6a))
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(capture.Seen()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	packets, err := capture.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if len(packets) < 4 {
		t.Fatalf("capture saw %d packets, want the UDP and TCP exchanges: %q", len(packets), packets)
	}
	for _, p := range packets {
		if !strings.Contains(p, sandbox.Resolver6a+".53") {
			t.Errorf("captured packet not with %s: %s", sandbox.Resolver6a, p)
		}
	}
}
