//go:build vmtest

package vmtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/pkg/vif"
)

// The rules of the offload chain as `nft -j` prints their expressions,
// counters zeroed, re-encoded with sorted keys.
var wantAccelRules = []string{
	`[{"match":{"left":{"meta":{"key":"l4proto"}},"op":"==","right":{"set":["tcp","udp"]}}},` +
		`{"match":{"left":{"meta":{"key":"iifgroup"}},"op":"==","right":2}},` +
		`{"match":{"left":{"meta":{"key":"oifgroup"}},"op":"==","right":1}},` +
		`{"flow":{"flowtable":"@qubes-accel","op":"add"}}]`,
	`[{"counter":{"bytes":0,"packets":0}}]`,
}

// TestFlowtableOffloadsClientTCP builds the offload table with the
// project's vif package in a sandbox network qube whose vif is
// configured by hand, rebuilds it as vifs come and go, and proves that a
// client's TCP connection to the upstream is offloaded.
func TestFlowtableOffloadsClientTCP(t *testing.T) {
	s := testsupport.New(t, sandbox.Options{})
	client := addClient(t, s, 5)
	configureVifByHand(t, s, client)

	rebuild := func(exclude string) {
		t.Helper()
		var devs []string
		if err := s.NetVM.Do(func() (err error) {
			devs, err = vif.FlowtableDevices("/proc/sys/net/ipv4/conf", exclude)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		h, err := s.NetVM.Handle()
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		msgs, err := nfnl.Queued(func(q *nftables.Conn) error { return vif.QueueOffloadTable(q, devs, true) })
		if err != nil {
			t.Fatal(err)
		}
		c, err := nfnl.Dial(int(h))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Batch(msgs); err != nil {
			t.Fatalf("build the offload table over %v: %v", devs, err)
		}
	}

	rebuild("")
	checkAccelTable(t, s.NetVM, "eth0", "lo", "vif5.0")
	requireOffloadedTCP(t, s, client)

	second := addClient(t, s, 6)
	rebuild("")
	checkAccelTable(t, s.NetVM, "eth0", "lo", "vif5.0", "vif6.0")
	rebuild(second.Vif)
	checkAccelTable(t, s.NetVM, "eth0", "lo", "vif5.0")
}

// TestVifRouteQubesRebuildsFlowtable runs the built bin/vif-route-qubes as
// Xen runs it, against fake XenStore and QubesDB daemons, and checks that
// every online and offline leaves the offload table with the right
// devices, and that client TCP traffic is offloaded.
func TestVifRouteQubesRebuildsFlowtable(t *testing.T) {
	r := newHotplugRig(t, 5, 6)
	// Like upstream, the flowtable covers every interface present, online
	// or not: vif6.0 exists already.
	r.hotplug("online", 5)
	checkAccelTable(t, r.s.NetVM, "eth0", "lo", "vif5.0", "vif6.0")
	requireOffloadedTCP(t, r.s, r.clients[5])
	r.hotplug("online", 6)
	checkAccelTable(t, r.s.NetVM, "eth0", "lo", "vif5.0", "vif6.0")
	r.hotplug("offline", 6)
	checkAccelTable(t, r.s.NetVM, "eth0", "lo", "vif5.0")
}

// addClient adds client qube domid with address 10.137.0.<domid>.
func addClient(t *testing.T, s *sandbox.Sandbox, domid int) *sandbox.Client {
	t.Helper()
	c, err := s.AddClient(sandbox.ClientSpec{Domid: domid, IPv4: fmt.Sprintf("10.137.0.%d", domid)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// configureVifByHand does with ip and nft what vif-route-qubes online does
// to the vif, apart from the offload table.
func configureVifByHand(t *testing.T, s *sandbox.Sandbox, c *sandbox.Client) {
	t.Helper()
	ip, vif := c.Spec.IPv4, c.Vif
	steps := [][]string{
		{"nft", "add element ip qubes allowed { \"" + vif + "\" . " + ip + " }; add element ip qubes downstream { " + ip + " }"},
		{"ip", "neigh", "add", ip, "lladdr", c.Spec.MAC, "dev", vif, "nud", "permanent"},
		{"ip", "link", "set", vif, "group", "2", "up"},
		{"ip", "route", "add", ip, "dev", vif},
		{"ip", "addr", "add", c.Spec.Gateway + "/32", "dev", vif},
	}
	for _, step := range steps {
		if out, err := s.NetVM.Exec(step[0], step[1:]...); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(step, " "), err, out)
		}
	}
}

// checkAccelTable checks with `nft -j` that table inet qubes-nat-accel holds
// exactly the flowtable over wantDevs and the offload chain and rules.
func checkAccelTable(t *testing.T, ns *sandbox.NS, wantDevs ...string) {
	t.Helper()
	var out struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := ns.NftJSON(&out, "list", "table", "inet", vif.OffloadTable); err != nil {
		t.Fatal(err)
	}
	var flowtables, chains, rules []string
	for _, obj := range out.Nftables {
		switch {
		case obj["flowtable"] != nil:
			var ft struct {
				Name, Hook string
				Prio       int
				Dev        json.RawMessage
			}
			if err := json.Unmarshal(obj["flowtable"], &ft); err != nil {
				t.Fatalf("decode flowtable: %v", err)
			}
			flowtables = append(flowtables, fmt.Sprintf("%s hook %s prio %d devices %v", ft.Name, ft.Hook, ft.Prio, devices(t, ft.Dev)))
		case obj["chain"] != nil:
			var ch struct {
				Name, Type, Hook, Policy string
				Prio                     int
			}
			if err := json.Unmarshal(obj["chain"], &ch); err != nil {
				t.Fatalf("decode chain: %v", err)
			}
			chains = append(chains, fmt.Sprintf("%s type %s hook %s prio %d policy %s", ch.Name, ch.Type, ch.Hook, ch.Prio, ch.Policy))
		case obj["rule"] != nil:
			var r struct {
				Chain string
				Expr  []map[string]any
			}
			if err := json.Unmarshal(obj["rule"], &r); err != nil {
				t.Fatalf("decode rule: %v", err)
			}
			for _, e := range r.Expr {
				if e["counter"] != nil {
					e["counter"] = map[string]int{"packets": 0, "bytes": 0}
				}
			}
			b, _ := json.Marshal(r.Expr)
			rules = append(rules, string(b))
		}
	}
	slices.Sort(wantDevs)
	wantFlowtables := []string{fmt.Sprintf("qubes-accel hook ingress prio 0 devices %v", wantDevs)}
	wantChains := []string{"qubes-accel type filter hook forward prio 5 policy accept"}
	if !slices.Equal(flowtables, wantFlowtables) {
		t.Errorf("flowtables:\n got %q\nwant %q", flowtables, wantFlowtables)
	}
	if !slices.Equal(chains, wantChains) {
		t.Errorf("chains:\n got %q\nwant %q", chains, wantChains)
	}
	if !slices.Equal(rules, wantAccelRules) {
		t.Errorf("rules:\n got %q\nwant %q", rules, wantAccelRules)
	}
}

// devices decodes a flowtable's "dev" member, which nft prints as a string
// for one device and as an array for several, and sorts it.
func devices(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		t.Fatalf("decode flowtable devices %s: %v", raw, err)
	}
	slices.Sort(many)
	return many
}

// requireOffloadedTCP opens a TCP connection from the client to a server
// beyond the upstream router and exchanges data over it until conntrack in
// the network qube marks the flow [OFFLOAD].
func requireOffloadedTCP(t *testing.T, s *sandbox.Sandbox, c *sandbox.Client) {
	t.Helper()
	var ln net.Listener
	if err := s.Upstream.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(sandbox.InternetHost, "0"))
		return err
	}); err != nil {
		t.Fatalf("listen upstream: %v", err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		io.Copy(conn, conn)
	}()
	port := ln.Addr().(*net.TCPAddr).Port

	var conn net.Conn
	if err := c.NS.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 10*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect from %s to %s: %v", c.Vif, ln.Addr(), err)
	}
	defer conn.Close()
	echo := bufio.NewReader(conn)

	eventually(t, 30*time.Second, func() error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte("ping\n")); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if _, err := echo.ReadString('\n'); err != nil {
			return fmt.Errorf("read echo: %w", err)
		}
		out, err := s.NetVM.Exec("conntrack", "-L", "-p", "tcp", "--dport", fmt.Sprint(port))
		if err != nil {
			return fmt.Errorf("conntrack -L: %w", err)
		}
		if !strings.Contains(string(out), "[OFFLOAD]") {
			return fmt.Errorf("flow to port %d not offloaded; conntrack shows:\n%s", port, out)
		}
		return nil
	})
}
