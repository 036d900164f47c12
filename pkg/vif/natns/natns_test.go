package natns_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/pkg/vif/natns"
)

// rig is a network qube (sandbox NetVM) holding a vif whose other end sits
// in a client namespace, and an upstream whose input chain counts packets by
// source address. The upstream routes the client's real network back to the
// network qube, without masquerading, so it sees the source the network
// qube forwards.
//
// The vif is named after the sandbox ("qnt<pid>x<n>.0") instead of
// "vif<domid>.<n>": NAT mode creates the namespace "<vif>-nat" in the
// global /run/netns, and a qnt name keeps it apart from other tests' and
// lets the sandbox sweep remove it after a crash.
type rig struct {
	sb     *sandbox.Sandbox
	client *sandbox.NS
	nat    *sandbox.NS
	spec   natns.Spec
}

const (
	spoofedIP   = "10.138.7.8"
	outsideHost = sandbox.InternetHost
)

func newRig(t *testing.T) *rig {
	t.Helper()
	sb := testsupport.New(t, sandbox.Options{NoBaseRuleset: true})
	spec := validSpec()
	spec.Vif = sb.ID + ".0"
	r := &rig{
		sb:     sb,
		client: &sandbox.NS{Name: sb.ID + "-cl"},
		nat:    &sandbox.NS{Name: natns.NamespaceName(spec.Vif)},
		spec:   spec,
	}
	// Registered after the sandbox's own cleanup, so it runs before it: the
	// sandbox removes only names starting with its ID and a dash.
	t.Cleanup(func() {
		if slices.Contains(testsupport.Namespaces(t), r.nat.Name) {
			if out, err := exec.Command("ip", "netns", "delete", r.nat.Name).CombinedOutput(); err != nil {
				t.Errorf("remove %s: %v: %s", r.nat.Name, err, out)
			}
		}
	})

	testsupport.MustRun(t, nil, "ip", "netns", "add", r.client.Name)
	testsupport.MustRun(t, nil, "ip", "-n", sb.NetVM.Name, "link", "add", spec.Vif, "address", "fe:ff:ff:ff:ff:ff",
		"type", "veth", "peer", "name", "eth0", "address", spec.ClientMAC.String(), "netns", r.client.Name)
	// IPv6 off in the client, so that the only packets it sends are the
	// test's and the drop counter counts nothing else.
	testsupport.MustRun(t, nil, "ip", "netns", "exec", r.client.Name, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	testsupport.MustBatch(t, r.client,
		"link set lo up",
		"addr add "+spec.VisibleIP.String()+"/32 dev eth0",
		"link set eth0 up",
		"route add "+spec.VisibleGateway.String()+" dev eth0 scope link",
		"route add default via "+spec.VisibleGateway.String()+" dev eth0",
	)
	testsupport.MustBatch(t, sb.Upstream, "route add 10.137.0.0/16 via "+sandbox.UplinkAddr)
	testsupport.LoadNft(t, sb.Upstream, `
table ip qntseen {
	counter real {}
	counter other {}
	chain input {
		type filter hook input priority filter; policy accept;
		ip saddr `+spec.RealIP.String()+` counter name "real"
		ip saddr != `+spec.RealIP.String()+` ip saddr 10.0.0.0/8 counter name "other"
	}
}`)
	return r
}

// routeOuterVif does by hand what routed mode does to the outer <vif> after
// Setup: host route and permanent neighbour for the real address, the back
// address, proxy ARP, link up.
func (r *rig) routeOuterVif(t *testing.T) {
	t.Helper()
	s := r.spec
	testsupport.MustBatch(t, r.sb.NetVM,
		"neigh add "+s.RealIP.String()+" dev "+s.Vif+" lladdr "+s.ClientMAC.String()+" nud permanent",
		"link set "+s.Vif+" group 2 up",
		"route add "+s.RealIP.String()+" dev "+s.Vif+" metric 32743",
		"addr add "+s.Gateway.String()+"/32 dev "+s.Vif,
	)
	if err := r.sb.NetVM.SetSysctl("net/ipv4/conf/"+s.Vif+"/proxy_arp", "1"); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) setup(t *testing.T) (undo func() error) {
	t.Helper()
	if err := r.sb.NetVM.Do(func() (err error) {
		undo, err = natns.Setup(r.spec)
		return err
	}); err != nil {
		t.Fatalf("Setup(%+v): %v", r.spec, err)
	}
	return undo
}

func (r *rig) teardown(t *testing.T) {
	t.Helper()
	if err := r.sb.NetVM.Do(func() error { return natns.Teardown(r.spec.Vif) }); err != nil {
		t.Fatalf("Teardown(%s): %v", r.spec.Vif, err)
	}
}

// TestTraffic sends real packets through a NAT-mode vif.
func TestTraffic(t *testing.T) {
	r := newRig(t)
	r.setup(t)
	r.routeOuterVif(t)

	if out, err := r.client.Exec("ping", "-n", "-c", "1", "-w", "10", outsideHost); err != nil {
		t.Fatalf("client (visible %s) pings %s: %v\n%s", r.spec.VisibleIP, outsideHost, err, out)
	}
	if real, other := r.upstreamSeen(t); real == 0 || other != 0 {
		t.Fatalf("upstream counted %d packets from the real address %s and %d from other 10/8 sources; want >0 and 0", real, r.spec.RealIP, other)
	}

	t.Run("ARP from the client is answered", func(t *testing.T) {
		var neighs []struct {
			Dst    string   `json:"dst"`
			LLAddr string   `json:"lladdr"`
			State  []string `json:"state"`
		}
		if err := r.client.IPJSON(&neighs, "neigh", "show", "dev", "eth0", r.spec.VisibleGateway.String()); err != nil {
			t.Fatal(err)
		}
		if len(neighs) != 1 || neighs[0].LLAddr != "fe:ff:ff:ff:ff:ff" {
			t.Fatalf("client's neighbour entry for its gateway %s = %+v, want one resolved to fe:ff:ff:ff:ff:ff", r.spec.VisibleGateway, neighs)
		}
	})

	for _, src := range []string{spoofedIP, r.spec.RealIP.String()} {
		t.Run("source "+src+" is dropped", func(t *testing.T) {
			testsupport.MustBatch(t, r.client, "addr add "+src+"/32 dev eth0")
			realBefore, _ := r.upstreamSeen(t)
			dropsBefore := r.dropped(t)
			if out, err := r.client.Exec("ping", "-n", "-c", "1", "-W", "1", "-I", src, outsideHost); err == nil {
				t.Fatalf("ping from %s got an answer:\n%s", src, out)
			}
			testsupport.WaitFor(t, fmt.Sprintf("the namespace's drop counter to pass %d", dropsBefore), func() bool { return r.dropped(t) > dropsBefore })
			if real, other := r.upstreamSeen(t); real != realBefore || other != 0 {
				t.Fatalf("upstream counters real=%d other=%d after a ping from %s, want %d and 0", real, other, src, realBefore)
			}
			testsupport.MustBatch(t, r.client, "addr del "+src+"/32 dev eth0")
		})
	}
}

// TestState checks the namespace, devices, table, neighbours, addresses
// and sysctls with ip, nft and /proc, and that Teardown removes them all.
func TestState(t *testing.T) {
	r := newRig(t)
	realIndex := r.linkIndex(t, r.sb.NetVM)
	r.setup(t)
	r.checkSetUp(t)
	r.teardown(t)
	r.checkTornDown(t, realIndex)
}

// TestNamespaceLikeIproute2 checks what makes the namespace one that
// iproute2 made: its binding reaches a mount namespace that already
// existed (because /run/netns is a shared mount), and `ip netns delete`
// removes it.
func TestNamespaceLikeIproute2(t *testing.T) {
	r := newRig(t)
	// A mount namespace made before Setup, in the same peer group; it
	// prints its mount table once told to.
	observer := exec.Command("unshare", "--mount", "--propagation", "unchanged",
		"sh", "-c", "read go; cat /proc/self/mountinfo")
	stdin, err := observer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	observer.Stdout, observer.Stderr = &out, &out
	if err := observer.Start(); err != nil {
		t.Fatal(err)
	}
	r.setup(t)
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	if err := observer.Wait(); err != nil || !nsfsMountAt(out.String(), r.nat.Path()) {
		t.Errorf("in a mount namespace made before Setup, %s is not an nsfs mount (%v):\n%s", r.nat.Path(), err, out.String())
	}

	testsupport.MustRun(t, nil, "ip", "netns", "delete", r.nat.Name)
	if slices.Contains(testsupport.Namespaces(t), r.nat.Name) {
		t.Errorf("ip netns list shows %s after ip netns delete", r.nat.Name)
	}
}

// TestSetupTwice is a restart: the second Setup replaces the first.
func TestSetupTwice(t *testing.T) {
	r := newRig(t)
	realIndex := r.linkIndex(t, r.sb.NetVM)
	r.setup(t)
	r.setup(t)
	r.checkSetUp(t)
	r.routeOuterVif(t)
	if out, err := r.client.Exec("ping", "-n", "-c", "1", "-w", "10", outsideHost); err != nil {
		t.Fatalf("ping after the second Setup: %v\n%s", err, out)
	}
	r.teardown(t)
	r.checkTornDown(t, realIndex)
}

// TestUndo checks that the undo Setup returns reverts it.
func TestUndo(t *testing.T) {
	r := newRig(t)
	before := r.kernelState(t)
	undo := r.setup(t)
	if err := r.sb.NetVM.Do(undo); err != nil {
		t.Fatalf("undo: %v", err)
	}
	r.checkUnchanged(t, before)
}

// TestTeardownWhenGone: offline of a vif without namespace succeeds and
// changes nothing, also twice.
func TestTeardownWhenGone(t *testing.T) {
	r := newRig(t)
	before := r.kernelState(t)
	r.teardown(t)
	r.teardown(t)
	r.checkUnchanged(t, before)
}

// TestBadInput: input Setup refuses, up front or when the kernel rejects it
// half-way, leaves the network qube as it was and no namespace.
func TestBadInput(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*natns.Spec)
	}{
		{"visible IP not IPv4", func(s *natns.Spec) { s.VisibleIP = netip.MustParseAddr("fd09:24ef:4179::a8a:707") }},
		{"visible IP equals real IP", func(s *natns.Spec) { s.VisibleIP = s.RealIP }},
		{"no such vif", func(s *natns.Spec) { s.Vif = s.Vif[:len(s.Vif)-1] + "9" }},
		// The kernel refuses a multicast MAC for the veth pair, made after
		// the namespace exists and the vif has moved into it.
		{"multicast client MAC", func(s *natns.Spec) { s.ClientMAC = net.HardwareAddr{0x01, 0x00, 0x5e, 0x00, 0x00, 0x01} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			before := r.kernelState(t)
			spec := r.spec
			tc.edit(&spec)
			err := r.sb.NetVM.Do(func() error {
				undo, err := natns.Setup(spec)
				if undo != nil {
					t.Errorf("Setup returned an undo with error %v", err)
				}
				return err
			})
			if err == nil {
				t.Fatalf("Setup(%+v) = nil error", spec)
			}
			t.Logf("Setup: %v", err)
			if slices.Contains(testsupport.Namespaces(t), natns.NamespaceName(spec.Vif)) {
				t.Errorf("namespace %s exists after a failed Setup", natns.NamespaceName(spec.Vif))
			}
			r.checkUnchanged(t, before)
		})
	}
}

// checkSetUp verifies the state Setup leaves.
func (r *rig) checkSetUp(t *testing.T) {
	t.Helper()
	s := r.spec
	if n := countOf(testsupport.Namespaces(t), r.nat.Name); n != 1 {
		t.Errorf("ip netns list shows %s %d times, want once", r.nat.Name, n)
	}

	// Devices: inside, the real vif and <vif>-p (client's MAC), both up;
	// outside, the outer veth <vif> and no <vif>-p.
	inside := r.links(t, r.nat)
	if got := sortedKeys(inside); !slices.Equal(got, []string{"lo", s.Vif, s.Vif + "-p"}) {
		t.Errorf("links in %s = %v, want lo, %s, %s-p", r.nat.Name, got, s.Vif, s.Vif)
	}
	if l := inside[s.Vif+"-p"]; l.Address != s.ClientMAC.String() || l.Kind() != "veth" || !slices.Contains(l.Flags, "UP") {
		t.Errorf("%s-p = %+v, want an UP veth with MAC %s", s.Vif, l, s.ClientMAC)
	}
	if l := inside[s.Vif]; !slices.Contains(l.Flags, "UP") || l.Address != "fe:ff:ff:ff:ff:ff" {
		t.Errorf("real %s in %s = %+v, want UP with its MAC fe:ff:ff:ff:ff:ff", s.Vif, r.nat.Name, l)
	}
	outside := r.links(t, r.sb.NetVM)
	if l, ok := outside[s.Vif]; !ok || l.Kind() != "veth" || l.Address != "fe:ff:ff:ff:ff:ff" {
		t.Errorf("outer %s in the network qube = %+v, want a veth with MAC fe:ff:ff:ff:ff:ff", s.Vif, l)
	}
	if _, ok := outside[s.Vif+"-p"]; ok {
		t.Errorf("%s-p exists in the network qube", s.Vif)
	}

	// Addresses, neighbours, sysctls inside.
	var addrs []struct {
		IfName   string `json:"ifname"`
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := r.nat.IPJSON(&addrs, "addr", "show"); err != nil {
		t.Fatal(err)
	}
	gotAddrs := map[string][]string{}
	for _, a := range addrs {
		for _, ai := range a.AddrInfo {
			gotAddrs[a.IfName] = append(gotAddrs[a.IfName], fmt.Sprintf("%s/%d", ai.Local, ai.PrefixLen))
		}
	}
	wantAddrs := map[string][]string{s.Vif + "-p": {s.RealIP.String() + "/32"}, s.Vif: {s.VisibleGateway.String() + "/32"}}
	if fmt.Sprint(gotAddrs) != fmt.Sprint(wantAddrs) {
		t.Errorf("addresses in %s = %v, want %v (and no IPv6)", r.nat.Name, gotAddrs, wantAddrs)
	}
	var neighs []struct {
		Dst    string `json:"dst"`
		Dev    string `json:"dev"`
		LLAddr string `json:"lladdr"`
	}
	if err := r.nat.IPJSON(&neighs, "neigh", "show", "nud", "permanent"); err != nil {
		t.Fatal(err)
	}
	var gotNeighs []string
	for _, n := range neighs {
		gotNeighs = append(gotNeighs, n.Dst+" dev "+n.Dev+" lladdr "+n.LLAddr)
	}
	slices.Sort(gotNeighs)
	wantNeighs := []string{
		s.Gateway.String() + " dev " + s.Vif + "-p lladdr fe:ff:ff:ff:ff:ff",
		s.VisibleIP.String() + " dev " + s.Vif + " lladdr " + s.ClientMAC.String(),
	}
	if !slices.Equal(gotNeighs, wantNeighs) {
		t.Errorf("permanent neighbours in %s = %q, want %q", r.nat.Name, gotNeighs, wantNeighs)
	}
	for key, want := range map[string]string{
		"net/ipv4/ip_forward":                        "1",
		"net/ipv6/conf/" + s.Vif + "/disable_ipv6":   "1",
		"net/ipv6/conf/" + s.Vif + "-p/disable_ipv6": "1",
	} {
		if got, err := r.nat.Sysctl(key); err != nil || got != want {
			t.Errorf("sysctl %s in %s = %q (%v), want %q", key, r.nat.Name, got, err, want)
		}
	}

	r.checkTable(t)
}

// checkTable compares `nft -j list ruleset` in the namespace with the table
// upstream's nft text makes, counters' values aside.
func (r *rig) checkTable(t *testing.T) {
	t.Helper()
	s := r.spec
	var ruleset struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := r.nat.NftJSON(&ruleset, "list", "ruleset"); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, obj := range ruleset.Nftables {
		for kind, raw := range obj {
			if kind == "metainfo" {
				continue
			}
			got = append(got, kind+" "+canonical(t, raw))
		}
	}
	payload := func(proto, field string) string {
		return fmt.Sprintf(`{"payload":{"protocol":%q,"field":%q}}`, proto, field)
	}
	match := func(left, right string) string {
		return fmt.Sprintf(`{"match":{"op":"==","left":%s,"right":%s}}`, left, right)
	}
	translate := func(field, from, to, dev string) string {
		return fmt.Sprintf(`[%s,{"mangle":{"key":%s,"value":%q}},{"fwd":{"dev":%q}}]`,
			match(payload("ip", field), fmt.Sprintf("%q", from)), payload("ip", field), to, dev)
	}
	rule := func(chain string, exprs string) string {
		return "rule " + canonical(t, json.RawMessage(fmt.Sprintf(
			`{"family":"netdev","table":"antispoof","chain":%q,"expr":%s}`, chain, exprs)))
	}
	chain := func(name string) string {
		return "chain " + canonical(t, json.RawMessage(fmt.Sprintf(
			`{"family":"netdev","table":"antispoof","name":%q,"type":"filter","hook":"ingress","prio":0,"policy":"drop"}`, name)))
	}
	counter := `[{"counter":{"packets":0,"bytes":0}}]`
	want := []string{
		"table " + canonical(t, json.RawMessage(`{"family":"netdev","name":"antispoof"}`)),
		chain("antispoof"),
		chain("reverse"),
		rule("antispoof", translate("saddr", s.VisibleIP.String(), s.RealIP.String(), s.Vif+"-p")),
		rule("antispoof", "["+strings.Join([]string{
			match(payload("arp", "htype"), "1"),
			match(payload("arp", "ptype"), `"ip"`),
			match(payload("arp", "hlen"), "6"),
			match(payload("arp", "plen"), "4"),
			match(payload("arp", "saddr ether"), fmt.Sprintf("%q", s.ClientMAC)),
			match(payload("arp", "saddr ip"), fmt.Sprintf("%q", s.VisibleIP)),
			`{"accept":null}`,
		}, ",")+"]"),
		rule("antispoof", counter),
		rule("reverse", translate("daddr", s.RealIP.String(), s.VisibleIP.String(), s.Vif)),
		rule("reverse", "["+match(payload("ether", "type"), `"arp"`)+`,{"accept":null}]`),
		rule("reverse", counter),
	}
	if !slices.Equal(got, want) {
		t.Errorf("nft -j list ruleset in %s:\n got %s\nwant %s", r.nat.Name, strings.Join(got, "\n     "), strings.Join(want, "\n     "))
	}
}

// checkTornDown verifies that nothing of NAT mode is left and that the
// real vif (recognised by its interface index) is back under its name.
func (r *rig) checkTornDown(t *testing.T, realIndex int) {
	t.Helper()
	if slices.Contains(testsupport.Namespaces(t), r.nat.Name) {
		t.Errorf("ip netns list still shows %s", r.nat.Name)
	}
	outside := r.links(t, r.sb.NetVM)
	l, ok := outside[r.spec.Vif]
	if !ok || l.IfIndex != realIndex || slices.Contains(l.Flags, "UP") {
		t.Errorf("%s in the network qube = %+v, want the real vif (index %d), down", r.spec.Vif, l, realIndex)
	}
	if _, ok := outside[r.spec.Vif+"-p"]; ok {
		t.Errorf("%s-p exists in the network qube", r.spec.Vif)
	}
}

// kernelState is the network qube's state plus the list of this run's
// namespaces (every name this rig can make starts with the sandbox's ID;
// other test processes' namespaces come and go beside them).
func (r *rig) kernelState(t *testing.T) string {
	t.Helper()
	state, err := r.sb.NetVM.KernelState()
	if err != nil {
		t.Fatal(err)
	}
	var ours []string
	for _, name := range testsupport.Namespaces(t) {
		if strings.HasPrefix(name, r.sb.ID) {
			ours = append(ours, name)
		}
	}
	return state + "### namespaces\n" + strings.Join(ours, "\n")
}

func (r *rig) checkUnchanged(t *testing.T, before string) {
	t.Helper()
	if after := r.kernelState(t); after != before {
		t.Errorf("network qube changed:\n%s", sandbox.StateDiff(before, after))
	}
}

// upstreamSeen reads the upstream's per-source counters.
func (r *rig) upstreamSeen(t *testing.T) (real, other int) {
	t.Helper()
	return r.namedCounter(t, "real"), r.namedCounter(t, "other")
}

func (r *rig) namedCounter(t *testing.T, name string) int {
	t.Helper()
	var listing struct {
		Nftables []struct {
			Counter *struct {
				Packets int `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := r.sb.Upstream.NftJSON(&listing, "list", "counter", "ip", "qntseen", name); err != nil {
		t.Fatal(err)
	}
	for _, o := range listing.Nftables {
		if o.Counter != nil {
			return o.Counter.Packets
		}
	}
	t.Fatalf("counter %s not in nft output", name)
	return 0
}

// dropped reads the counter at the end of the client-side chain: packets
// from the client that no rule let through.
func (r *rig) dropped(t *testing.T) int {
	t.Helper()
	var listing struct {
		Nftables []struct {
			Rule *struct {
				Chain string `json:"chain"`
				Expr  []struct {
					Counter *struct {
						Packets int `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := r.nat.NftJSON(&listing, "list", "chain", "netdev", "antispoof", "antispoof"); err != nil {
		t.Fatal(err)
	}
	for _, o := range listing.Nftables {
		if o.Rule != nil && len(o.Rule.Expr) == 1 && o.Rule.Expr[0].Counter != nil {
			return o.Rule.Expr[0].Counter.Packets
		}
	}
	t.Fatal("no counter rule in chain netdev antispoof antispoof")
	return 0
}

type link struct {
	IfName   string   `json:"ifname"`
	IfIndex  int      `json:"ifindex"`
	Address  string   `json:"address"`
	Flags    []string `json:"flags"`
	LinkInfo *struct {
		InfoKind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func (l link) Kind() string {
	if l.LinkInfo == nil {
		return ""
	}
	return l.LinkInfo.InfoKind
}

func (r *rig) links(t *testing.T, ns *sandbox.NS) map[string]link {
	t.Helper()
	var links []link
	if err := ns.IPJSON(&links, "-d", "link", "show"); err != nil {
		t.Fatal(err)
	}
	m := map[string]link{}
	for _, l := range links {
		m[l.IfName] = l
	}
	return m
}

func (r *rig) linkIndex(t *testing.T, ns *sandbox.NS) int {
	t.Helper()
	l, ok := r.links(t, ns)[r.spec.Vif]
	if !ok {
		t.Fatalf("no %s in %s", r.spec.Vif, ns.Name)
	}
	return l.IfIndex
}

// canonical re-encodes JSON with sorted keys, without object handles (they
// follow the order of creation, not the content) and with counter values
// zeroed.
func canonical(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("decode %s: %v", raw, err)
	}
	var zero func(any)
	zero = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			delete(v, "handle")
			for k, e := range v {
				if k == "counter" {
					v[k] = map[string]any{"packets": 0, "bytes": 0}
					continue
				}
				zero(e)
			}
		case []any:
			for _, e := range v {
				zero(e)
			}
		}
	}
	zero(v)
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func countOf(list []string, s string) int {
	n := 0
	for _, e := range list {
		if e == s {
			n++
		}
	}
	return n
}

func sortedKeys(m map[string]link) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// nsfsMountAt reports whether a /proc/<pid>/mountinfo listing has an nsfs
// mount at path (fields: ... mount-point ... " - " fstype ...).
func nsfsMountAt(mountinfo, path string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		fields := strings.Fields(pre)
		if ok && len(fields) > 4 && fields[4] == path && strings.HasPrefix(post, "nsfs ") {
			return true
		}
	}
	return false
}
