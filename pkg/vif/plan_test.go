package vif

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/xenstore"
)

// mapStore is a Store over a map; missing keys answer notFound.
type mapStore struct {
	m        map[string]string
	notFound error
	reads    []string
}

func (s *mapStore) Read(p string) ([]byte, error) {
	s.reads = append(s.reads, p)
	v, ok := s.m[p]
	if !ok {
		return nil, fmt.Errorf("read %s: %w", p, s.notFound)
	}
	return []byte(v), nil
}

const xb = "/local/domain/0/backend/vif/12/0"

func sources(xs, db map[string]string) (Sources, *mapStore) {
	dbStore := &mapStore{m: db, notFound: qubesdb.ErrNotFound}
	return Sources{
		XenStore: &mapStore{m: xs, notFound: xenstore.ErrNotFound},
		QubesDB:  func() (Store, error) { return dbStore, nil },
	}, dbStore
}

func baseXS() map[string]string {
	return map[string]string{xb + "/ip": "10.137.0.12 fd09:24ef:4179::a89:c", xb + "/mac": "00:16:3e:5e:6c:0c", xb + "/type": "vif"}
}

func baseDB() map[string]string {
	return map[string]string{"/qubes-netvm-gateway": "10.138.0.1", "/qubes-netvm-gateway6": "fd09:24ef:4179::a8a:1"}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func online(vif string) Invocation {
	return Invocation{Command: "online", TypeIf: "vif", Vif: vif, XenbusPath: xb, Action: Online}
}

func TestGather(t *testing.T) {
	src, _ := sources(baseXS(), baseDB())
	in, err := Gather(online("vif12.0"), src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if in.Metric != 32740 || in.Name != "vif12.0" || in.MAC.String() != "00:16:3e:5e:6c:0c" || in.VifType != "vif" {
		t.Errorf("inputs = %+v", in)
	}
	want := []netip.Addr{netip.MustParseAddr("10.137.0.12"), netip.MustParseAddr("fd09:24ef:4179::a89:c")}
	if !slices.Equal(in.Addrs, want) {
		t.Errorf("addrs = %v, want %v", in.Addrs, want)
	}
	if in.Gateway.String() != "10.138.0.1" || in.Gateway6.String() != "fd09:24ef:4179::a8a:1" || in.Harden || in.Mapped != nil {
		t.Errorf("QubesDB inputs = %+v", in)
	}
}

func TestGatherErrors(t *testing.T) {
	tests := []struct {
		name    string
		xs, db  func(xs, db map[string]string)
		vif     string
		wantErr string
	}{
		{name: "bad vif", vif: "vif1", wantErr: `bad interface name "vif1"`},
		{name: "uppercase MAC", xs: func(xs, _ map[string]string) { xs[xb+"/mac"] = "00:16:3E:5E:6C:0C" }, wantErr: `bad MAC address "00:16:3E:5E:6C:0C"`},
		{name: "missing MAC", xs: func(xs, _ map[string]string) { delete(xs, xb+"/mac") }, wantErr: `bad MAC address ""`},
		{name: "garbage address", xs: func(xs, _ map[string]string) { xs[xb+"/ip"] = "10.137.0.12 bogus" }, wantErr: `bad address "bogus"`},
		{name: "CIDR address", xs: func(xs, _ map[string]string) { xs[xb+"/ip"] = "10.137.0.12/24" }, wantErr: `bad address "10.137.0.12/24"`},
		{name: "mapped IPv4 in IPv6", xs: func(xs, _ map[string]string) { xs[xb+"/ip"] = "::ffff:10.137.0.12" }, wantErr: `bad address "::ffff:10.137.0.12"`},
		{name: "bad vifname", xs: func(xs, _ map[string]string) { xs[xb+"/vifname"] = "a/b" }, wantErr: `bad interface name "a/b"`},
		{name: "long vifname", xs: func(xs, _ map[string]string) { xs[xb+"/vifname"] = "abcdefghijklmnop" }, wantErr: `bad interface name "abcdefghijklmnop"`},
		{name: "no gateway", db: func(_, db map[string]string) { delete(db, "/qubes-netvm-gateway") }, wantErr: "/qubes-netvm-gateway is not set"},
		{name: "IPv6 gateway as v4", db: func(_, db map[string]string) { db["/qubes-netvm-gateway"] = "fd09::1" }, wantErr: `bad IPv4 address "fd09::1"`},
		{name: "bad gateway6", db: func(_, db map[string]string) { db["/qubes-netvm-gateway6"] = "10.0.0.1" }, wantErr: `bad IPv6 address "10.0.0.1"`},
		{name: "bad visible ip", db: func(_, db map[string]string) {
			db["/mapped-ip/10.137.0.12/visible-ip"] = "10.137.0.300"
			db["/mapped-ip/10.137.0.12/visible-gateway"] = "10.138.0.1"
		}, wantErr: `bad IPv4 address "10.137.0.300"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			xs, db := baseXS(), baseDB()
			if tt.xs != nil {
				tt.xs(xs, db)
			}
			if tt.db != nil {
				tt.db(xs, db)
			}
			vif := tt.vif
			if vif == "" {
				vif = "vif12.0"
			}
			src, _ := sources(xs, db)
			_, err := Gather(online(vif), src, quiet)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// Without addresses online reads QubesDB's hardening flag only, and the
// plan hardens the vif (upstream reads the flag whatever ip holds);
// offline does not open QubesDB.
func TestGatherWithoutAddressesReadsOnlyHardening(t *testing.T) {
	xs := baseXS()
	delete(xs, xb+"/ip")
	db := baseDB()
	db["/qubes-service/harden-network-interfaces"] = "1"
	src, store := sources(xs, db)
	in, err := Gather(online("vif12.0"), src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Addrs) != 0 || !in.Harden || !slices.Equal(store.reads, []string{"/qubes-service/harden-network-interfaces"}) {
		t.Errorf("addrs %v, harden %v, QubesDB reads %v", in.Addrs, in.Harden, store.reads)
	}
	var b strings.Builder
	Describe(&b, Steps(in, DefaultOptions()))
	if !strings.Contains(b.String(), "harden: apply") {
		t.Errorf("plan without addresses does not harden:\n%s", b.String())
	}

	src.QubesDB = func() (Store, error) { return nil, errors.New("QubesDB must not be opened") }
	off := online("vif12.0")
	off.Command, off.Action = "offline", Offline
	if _, err := Gather(off, src, quiet); err != nil {
		t.Errorf("offline without addresses: %v", err)
	}
}

func TestGatherIPFallsBackToEnvironment(t *testing.T) {
	xs := baseXS()
	delete(xs, xb+"/ip")
	src, _ := sources(xs, baseDB())
	inv := online("vif12.0")
	inv.IP = "10.137.0.99"
	in, err := Gather(inv, src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if len(in.Addrs) != 1 || in.Addrs[0].String() != "10.137.0.99" {
		t.Errorf("addrs = %v", in.Addrs)
	}
}

func TestGatherMappedAndHardening(t *testing.T) {
	db := baseDB()
	db["/mapped-ip/10.137.0.12/visible-ip"] = "10.137.0.200"
	db["/mapped-ip/10.137.0.12/visible-gateway"] = "10.138.0.200"
	db["/qubes-service/harden-network-interfaces"] = "1"
	src, _ := sources(baseXS(), db)
	in, err := Gather(online("vif12.0"), src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if in.Mapped == nil || in.Mapped.VisibleIP.String() != "10.137.0.200" || !in.Harden {
		t.Errorf("inputs = %+v, mapped %+v", in, in.Mapped)
	}
	// A visible address equal to the real one is not NAT mode.
	db["/mapped-ip/10.137.0.12/visible-ip"] = "10.137.0.12"
	in, err = Gather(online("vif12.0"), src, quiet)
	if err != nil || in.Mapped != nil {
		t.Errorf("visible == real: mapped %+v, err %v", in.Mapped, err)
	}
}

// The online plan keeps upstream's order: anti-spoofing is in place before
// the link comes up, and each address's route is followed by its hooks.
func TestPlanOnlineOrder(t *testing.T) {
	src, _ := sources(baseXS(), baseDB())
	in, err := Gather(online("vif12.0"), src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var descs []string
	for _, s := range Steps(in, DefaultOptions()) {
		descs = append(descs, s.Desc)
	}
	order := []string{
		"check the base ruleset",
		"find device vif12.0",
		"proxy_arp = 1",
		"nft add flowtable inet qubes-nat-accel",
		"conntrack -D",
		"ip neighbour add 10.137.0.12 dev vif12.0 lladdr 00:16:3e:5e:6c:0c nud permanent",
		"ip neighbour add fd09:24ef:4179::a89:c",
		`nft add element: ip qubes allowed { "vif12.0" . 10.137.0.12 }`,
		"ip link set dev vif12.0 group 2 up",
		"ip route add 10.137.0.12 dev vif12.0 metric 32740",
		`run hooks in /rw/config/network-hooks.d: online vif12.0 "vif" "10.137.0.12"`,
		"ip route add fd09:24ef:4179::a89:c dev vif12.0 metric 32740 (if IPv6 is enabled on the vif)",
		`run hooks in /rw/config/network-hooks.d: online vif12.0 "vif" "fd09:24ef:4179::a89:c" (if IPv6 is enabled on the vif)`,
		"ip addr add 10.138.0.1/32 dev vif12.0",
		"ip addr add fd09:24ef:4179::a8a:1/128 dev vif12.0",
		"net/ipv6/conf/vif12.0/proxy_ndp = 1",
	}
	i := 0
	for _, d := range descs {
		if i < len(order) && strings.Contains(d, order[i]) {
			i++
		}
	}
	if i != len(order) {
		t.Fatalf("plan is missing or misorders %q:\n%s", order[i], strings.Join(descs, "\n"))
	}
}

// FuzzParseAddrs: XenStore's ip value is outside input; whatever is
// accepted is a plain unicast address listed in it, once.
func FuzzParseAddrs(f *testing.F) {
	for _, s := range []string{"10.137.0.5", "10.137.0.5 fd09:24ef:4179::a89:5", "fe80::1%eth0", "::ffff:1.2.3.4", " 1.2.3.4  1.2.3.4 ", "1.2.3.4/24", "0.0.0.0 ff02::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		addrs, err := parseAddrs(list)
		if err != nil {
			return
		}
		fields := strings.Fields(list)
		seen := map[netip.Addr]bool{}
		for _, a := range addrs {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() || seen[a] || !slices.Contains(fields, a.String()) && !slices.ContainsFunc(fields, func(f string) bool { p, err := netip.ParseAddr(f); return err == nil && p == a }) {
				t.Fatalf("parseAddrs(%q) accepted %v", list, a)
			}
			seen[a] = true
		}
	})
}

// The plan is data: an offline of a NAT-less IPv4 vif is exactly these
// changes, in this order.
func TestPlanOfflineAsData(t *testing.T) {
	xs := baseXS()
	xs[xb+"/ip"] = "10.137.0.12"
	src, _ := sources(xs, baseDB())
	off := online("vif12.0")
	off.Command, off.Action = "offline", Offline
	in, err := Gather(off, src, quiet)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("10.137.0.12")
	metric := fmt.Sprint(Metric(12))
	want := []Change{
		{Kind: RemoveElements, Object: "vif12.0", Value: "[10.137.0.12]"},
		{Kind: PurgeConntrack, Object: "[10.137.0.12]"},
		{Kind: FindLink, Object: "vif12.0"},
		{Kind: DelNeighbour, Object: "vif12.0", Addr: a},
		{Kind: DelRoute, Object: "vif12.0", Addr: a, Value: metric},
		{Kind: RunHooks, Object: "vif12.0", Addr: a, Value: "offline"},
		{Kind: DelAddress, Object: "vif12.0", Addr: netip.MustParseAddr("10.138.0.1")},
		{Kind: DelAddress, Object: "vif12.0", Addr: netip.MustParseAddr("fd09:24ef:4179::a8a:1")},
		{Kind: RemoveNAT, Object: "vif12.0-nat"},
	}
	if got := Changes(Steps(in, DefaultOptions())); !slices.Equal(got, want) {
		t.Errorf("offline plan:\n%+v\nwant\n%+v", got, want)
	}
}
