package dns

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	fakeresolved "github.com/qubes-netvm/qnet/internal/fake/resolved"
	"github.com/qubes-netvm/qnet/internal/fake/systembus"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

func v4(ifindex int32, a, b, c, d byte) ResolvedServer {
	return ResolvedServer{Ifindex: ifindex, Family: 2, Address: []byte{a, b, c, d}}
}

func v6(ifindex int32) ResolvedServer {
	return ResolvedServer{Ifindex: ifindex, Family: 10, Address: netip.MustParseAddr("2001:db8::53").AsSlice()}
}

// asFake converts servers to the fake's own copy of the D-Bus type.
func asFake(servers ...ResolvedServer) []fakeresolved.Server {
	out := make([]fakeresolved.Server, 0, len(servers))
	for _, s := range servers {
		out = append(out, fakeresolved.Server(s))
	}
	return out
}

func TestIPv4(t *testing.T) {
	tests := []struct {
		name    string
		servers []ResolvedServer
		want    []netip.Addr
	}{
		{"none", nil, nil},
		{"per-link only, order kept", []ResolvedServer{v4(3, 9, 9, 9, 9), v4(2, 1, 1, 1, 1)}, testsupport.Addrs("9.9.9.9", "1.1.1.1")},
		{"global wins over per-link", []ResolvedServer{v4(3, 9, 9, 9, 9), v4(0, 1, 1, 1, 1), v4(2, 8, 8, 8, 8), v4(0, 1, 0, 0, 1)}, testsupport.Addrs("1.1.1.1", "1.0.0.1")},
		{"ipv6 dropped", []ResolvedServer{v6(0), v4(3, 9, 9, 9, 9), v6(3)}, testsupport.Addrs("9.9.9.9")},
		{"global ipv6 does not hide per-link ipv4", []ResolvedServer{v6(0), v4(3, 9, 9, 9, 9)}, testsupport.Addrs("9.9.9.9")},
		{"ipv6 only", []ResolvedServer{v6(0), v6(2)}, nil},
		{"malformed ipv4 entries skipped", []ResolvedServer{
			{Ifindex: 0, Family: 2, Address: []byte{1, 2, 3}},
			{Ifindex: 0, Family: 2, Address: make([]byte, 16)},
			v4(2, 8, 8, 8, 8),
		}, testsupport.Addrs("8.8.8.8")},
		{"unknown family skipped", []ResolvedServer{{Ifindex: 0, Family: 7, Address: []byte{1, 1, 1, 1}}, v4(1, 2, 2, 2, 2)}, testsupport.Addrs("2.2.2.2")},
		{"duplicates kept", []ResolvedServer{v4(0, 1, 1, 1, 1), v4(0, 1, 1, 1, 1)}, testsupport.Addrs("1.1.1.1", "1.1.1.1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResolvedIPv4(tt.servers); !slices.Equal(got, tt.want) {
				t.Errorf("IPv4(%v) = %v, want %v", tt.servers, got, tt.want)
			}
		})
	}
}

func v6at(ifindex int32, addr string) ResolvedServer {
	return ResolvedServer{Ifindex: ifindex, Family: 10, Address: netip.MustParseAddr(addr).AsSlice()}
}

func TestIPv6(t *testing.T) {
	tests := []struct {
		name          string
		servers       []ResolvedServer
		want, skipped []netip.Addr
	}{
		{"none", nil, nil, nil},
		{"ipv4 dropped", []ResolvedServer{v4(0, 1, 1, 1, 1), v6at(2, "2001:db8::1")}, testsupport.Addrs("2001:db8::1"), nil},
		{"global wins over per-link", []ResolvedServer{v6at(3, "2001:db8::3"), v6at(0, "2001:db8::1"), v6at(0, "2001:db8::2")}, testsupport.Addrs("2001:db8::1", "2001:db8::2"), nil},
		{"global ipv4 does not hide per-link ipv6", []ResolvedServer{v4(0, 1, 1, 1, 1), v6at(3, "2001:db8::3")}, testsupport.Addrs("2001:db8::3"), nil},
		{"link-local skipped and reported with its link", []ResolvedServer{v6at(3, "fe80::1"), v6at(3, "2001:db8::3")}, testsupport.Addrs("2001:db8::3"), testsupport.Addrs("fe80::1%3")},
		{"only link-local", []ResolvedServer{v6at(2, "fe80::1")}, nil, testsupport.Addrs("fe80::1%2")},
		{"malformed entries skipped", []ResolvedServer{
			{Ifindex: 0, Family: 10, Address: []byte{1, 2, 3, 4}},
			v6at(0, "::ffff:1.2.3.4"),
			v6at(2, "2001:db8::2"),
		}, testsupport.Addrs("2001:db8::2"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := ResolvedIPv6(tt.servers)
			if !slices.Equal(got, tt.want) || !slices.Equal(skipped, tt.skipped) {
				t.Errorf("IPv6(%v) = %v, %v; want %v, %v", tt.servers, got, skipped, tt.want, tt.skipped)
			}
		})
	}
}

func TestDNS(t *testing.T) {
	servers := []ResolvedServer{v4(0, 1, 1, 1, 1), v6(3), v4(3, 9, 9, 9, 9)}
	tests := []struct {
		name            string
		serve           func(t *testing.T, address string)
		want            []ResolvedServer
		wantUnavailable bool
		wantErr         bool
	}{
		{"servers", func(t *testing.T, a string) { fakeresolved.Start(t, a, asFake(servers...), true) }, servers, false, false},
		{"empty list is an answer, not a fallback", func(t *testing.T, a string) { fakeresolved.Start(t, a, nil, true) }, nil, false, false},
		{"service unknown", func(t *testing.T, a string) {}, nil, true, true},
		{"null property", func(t *testing.T, a string) { fakeresolved.StartNull(t, a) }, nil, true, true},
		{"resolved never answers", func(t *testing.T, a string) { fakeresolved.StartSilent(t, a) }, nil, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			address := systembus.StartBus(t)
			tt.serve(t, address)
			conn := systembus.Connect(t, address)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			got, err := ResolvedDNS(ctx, conn)
			if (err != nil) != tt.wantErr || errors.Is(err, ErrResolvedUnavailable) != tt.wantUnavailable {
				t.Fatalf("DNS error = %v, want error %v, unavailable %v", err, tt.wantErr, tt.wantUnavailable)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("DNS = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i].Ifindex != tt.want[i].Ifindex || got[i].Family != tt.want[i].Family || !slices.Equal(got[i].Address, tt.want[i].Address) {
					t.Fatalf("DNS = %v, want %v", got, tt.want)
				}
			}
		})
	}
}

func TestWatchDNS(t *testing.T) {
	address := systembus.StartBus(t)
	conn := systembus.Connect(t, address)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan struct{}, 64)
	done := make(chan error, 1)
	go func() { done <- WatchResolved(ctx, conn, func() { changes <- struct{}{} }) }()

	waitChange := func(what string) {
		t.Helper()
		select {
		case <-changes:
		case <-time.After(5 * time.Second):
			t.Fatalf("no change reported within 5 s after %s", what)
		}
	}
	waitChange("subscribing")
	owner := systembus.Connect(t, address)
	if _, err := owner.RequestName(ResolvedBusName, dbus.NameFlagDoNotQueue); err != nil {
		t.Fatal(err)
	}
	waitChange("resolved appearing on the bus")
	if _, err := owner.ReleaseName(ResolvedBusName); err != nil {
		t.Fatal(err)
	}
	waitChange("resolved leaving the bus")
	fake := fakeresolved.Start(t, address, asFake(v4(0, 1, 1, 1, 1)), true)
	waitChange("resolved appearing again")
	fake.SetDNS(asFake(v4(0, 8, 8, 8, 8)))
	waitChange("a PropertiesChanged on DNS")
	select {
	case <-changes:
		t.Fatal("a change reported without a cause")
	default:
	}

	conn.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("WatchResolved returned nil after its connection closed; want an error so the caller reconnects")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WatchResolved still running 5 s after its connection closed")
	}
}

func TestMeansDNSChange(t *testing.T) {
	props := "org.freedesktop.DBus.Properties.PropertiesChanged"
	owner := "org.freedesktop.DBus.NameOwnerChanged"
	variant := dbus.MakeVariant([]ResolvedServer{})
	tests := []struct {
		name string
		sig  dbus.Signal
		want bool
	}{
		{"DNS changed", dbus.Signal{Name: props, Path: ResolvedObjectPath, Body: []any{ResolvedManager, map[string]dbus.Variant{"DNS": variant}, []string{}}}, true},
		{"DNS invalidated", dbus.Signal{Name: props, Path: ResolvedObjectPath, Body: []any{ResolvedManager, map[string]dbus.Variant{}, []string{"DNS"}}}, true},
		{"other property", dbus.Signal{Name: props, Path: ResolvedObjectPath, Body: []any{ResolvedManager, map[string]dbus.Variant{"DNSSEC": dbus.MakeVariant("no")}, []string{}}}, false},
		{"other interface", dbus.Signal{Name: props, Path: ResolvedObjectPath, Body: []any{"org.freedesktop.resolve1.Link", map[string]dbus.Variant{"DNS": variant}, []string{}}}, false},
		{"other object", dbus.Signal{Name: props, Path: "/org/freedesktop/resolve1/link/_32", Body: []any{ResolvedManager, map[string]dbus.Variant{"DNS": variant}, []string{}}}, false},
		{"malformed body", dbus.Signal{Name: props, Path: ResolvedObjectPath, Body: []any{ResolvedManager}}, false},
		{"resolved owner changed", dbus.Signal{Name: owner, Body: []any{ResolvedBusName, "", ":1.5"}}, true},
		{"other owner changed", dbus.Signal{Name: owner, Body: []any{"org.freedesktop.login1", "", ":1.5"}}, false},
		{"empty owner signal", dbus.Signal{Name: owner}, false},
		{"unrelated signal", dbus.Signal{Name: "org.freedesktop.DBus.NameAcquired", Body: []any{ResolvedBusName}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := MeansResolvedChange(&tt.sig); got != tt.want {
				t.Errorf("MeansResolvedChange = %v, want %v", got, tt.want)
			}
		})
	}
}

// FuzzIPv4: whatever resolved's DNS array holds, only IPv4 addresses that
// were in it come out, global ones alone when there are any.
func FuzzIPv4(f *testing.F) {
	f.Add([]byte{0, 2, 4, 1, 1, 1, 1, 3, 10, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add([]byte{2, 2, 4, 9, 9, 9, 9, 0, 2, 3, 1, 2, 3})
	f.Fuzz(func(t *testing.T, raw []byte) {
		// Each entry: ifindex byte, family byte, address length byte, address.
		var servers []ResolvedServer
		for len(raw) >= 3 {
			n := min(int(raw[2]), len(raw)-3)
			servers = append(servers, ResolvedServer{Ifindex: int32(raw[0]), Family: int32(raw[1]), Address: raw[3 : 3+n]})
			raw = raw[3+n:]
		}
		global := slices.ContainsFunc(servers, func(s ResolvedServer) bool { return s.Ifindex == 0 && s.Family == 2 && len(s.Address) == 4 })
		for _, a := range ResolvedIPv4(servers) {
			if !a.Is4() || !slices.ContainsFunc(servers, func(s ResolvedServer) bool {
				return s.Family == 2 && bytes.Equal(s.Address, a.AsSlice()) && (!global || s.Ifindex == 0)
			}) {
				t.Fatalf("IPv4(%v) returned %v", servers, a)
			}
		}
	})
}
