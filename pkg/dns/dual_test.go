package dns

import (
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

func TestPlanDual(t *testing.T) {
	v4 := testsupport.Addrs("10.139.1.1", "10.139.1.2")
	to := func(family, v, r string) []string {
		return []string{family + " daddr " + v + " udp dport 53 dnat to " + r, family + " daddr " + v + " tcp dport 53 dnat to " + r}
	}
	refuse := func(family, v string) []string {
		return []string{family + " daddr " + v + " udp dport 53 reject", family + " daddr " + v + " tcp dport 53 reject with tcp reset"}
	}
	tests := []struct {
		name                   string
		virtual6, real4, real6 []string
		want                   []string
	}{
		{"no IPv6 keys: exactly Plan", nil, []string{"192.0.2.1"}, []string{"2001:db8::1"},
			slices.Concat(to("ip", "10.139.1.1", "192.0.2.1"), to("ip", "10.139.1.2", "192.0.2.1"))},
		{"no IPv6 keys, no server: drop, as today", nil, nil, []string{"2001:db8::1"},
			[]string{"ip daddr 10.139.1.1 udp dport 53 drop", "ip daddr 10.139.1.1 tcp dport 53 drop", "ip daddr 10.139.1.2 udp dport 53 drop", "ip daddr 10.139.1.2 tcp dport 53 drop"}},
		{"both families, cycling", []string{"fd09:24ef:4179::a8b:1", "fd09:24ef:4179::a8b:2"}, []string{"192.0.2.1"}, []string{"2001:db8::1", "2001:db8::2"},
			slices.Concat(to("ip", "10.139.1.1", "192.0.2.1"), to("ip", "10.139.1.2", "192.0.2.1"),
				to("ip6", "fd09:24ef:4179::a8b:1", "2001:db8::1"), to("ip6", "fd09:24ef:4179::a8b:2", "2001:db8::2"))},
		{"no IPv6 server: IPv6 refused", []string{"fd09:24ef:4179::a8b:1", "fd09:24ef:4179::a8b:2"}, []string{"192.0.2.1"}, nil,
			slices.Concat(to("ip", "10.139.1.1", "192.0.2.1"), to("ip", "10.139.1.2", "192.0.2.1"),
				refuse("ip6", "fd09:24ef:4179::a8b:1"), refuse("ip6", "fd09:24ef:4179::a8b:2"))},
		{"IPv6-only uplink: IPv4 refused", []string{"fd09:24ef:4179::a8b:1"}, nil, []string{"2001:db8::1"},
			slices.Concat(refuse("ip", "10.139.1.1"), refuse("ip", "10.139.1.2"), to("ip6", "fd09:24ef:4179::a8b:1", "2001:db8::1"))},
		{"IPv4-mapped and zoned IPv6 values ignored", []string{"::ffff:10.139.1.1", "fe80::1%eth0"}, []string{"192.0.2.1"}, nil,
			slices.Concat(to("ip", "10.139.1.1", "192.0.2.1"), to("ip", "10.139.1.2", "192.0.2.1"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ruleStrings(PlanDual(v4, testsupport.Addrs(tt.virtual6...), testsupport.Addrs(tt.real4...), testsupport.Addrs(tt.real6...)))
			if !slices.Equal(got, tt.want) {
				t.Errorf("PlanDual =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestParseVirtual6(t *testing.T) {
	for value, want := range map[string]bool{
		"fd09:24ef:4179::a8b:1": true, "2001:db8::1": true,
		"": false, "10.139.1.1": false, "::ffff:10.139.1.1": false, "fe80::1%eth0": false,
		"fd09:24ef:4179::a8b:1\n": false, " fd09::1": false, "fd09::1/128": false, "[fd09::1]": false,
	} {
		if _, ok := ParseVirtual6([]byte(value)); ok != want {
			t.Errorf("ParseVirtual6(%q) accepted = %v, want %v", value, ok, want)
		}
	}
}

func TestScriptDual(t *testing.T) {
	got := Script(PlanDual(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("fd09::1"), nil, testsupport.Addrs("2001:db8::53")))
	want := `add table ip qubes
add chain ip qubes dnat-dns
delete chain ip qubes dnat-dns
table ip qubes {
	chain dnat-dns {
		type nat hook prerouting priority dstnat; policy accept;
	}
}
add table ip qubes
add chain ip qubes dnat-dns-reject
delete chain ip qubes dnat-dns-reject
table ip qubes {
	chain dnat-dns-reject {
		type filter hook prerouting priority dstnat + 10; policy accept;
		ip daddr 10.139.1.1 udp dport 53 reject
		ip daddr 10.139.1.1 tcp dport 53 reject with tcp reset
	}
}
add table ip6 qubes
add chain ip6 qubes dnat-dns
delete chain ip6 qubes dnat-dns
table ip6 qubes {
	chain dnat-dns {
		type nat hook prerouting priority dstnat; policy accept;
		ip6 daddr fd09::1 udp dport 53 dnat to 2001:db8::53
		ip6 daddr fd09::1 tcp dport 53 dnat to 2001:db8::53
	}
}
`
	if got != want {
		t.Fatalf("Script =\n%s\nwant\n%s", got, want)
	}
}

// TestMatchesIPv6ChainsWrittenByNft: chains nft wrote from Script's text
// match, so a run after them changes nothing; a difference in either
// family, or a chain of this package that should not be there, does not.
func TestMatchesIPv6ChainsWrittenByNft(t *testing.T) {
	ns, nft := newNetVM(t)
	rules := PlanDual(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("fd09::1", "fd09::2"), nil, testsupport.Addrs("2001:db8::53"))
	testsupport.LoadNft(t, ns, Script(rules))
	if same, err := nft.Matches(rules); err != nil || !same {
		t.Fatalf("Matches over nft's chains = %v, %v; want true", same, err)
	}
	other := PlanDual(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("fd09::1", "fd09::2"), nil, testsupport.Addrs("2001:db8::54"))
	if same, err := nft.Matches(other); err != nil || same {
		t.Fatalf("Matches with another IPv6 server = %v, %v; want false", same, err)
	}
	ipv4Only := Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), nil)
	if same, err := nft.Matches(ipv4Only); err != nil || same {
		t.Fatalf("Matches(IPv4 only) with IPv6 chains present = %v, %v; want false", same, err)
	}
	if err := nft.Replace(ipv4Only); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"ip qubes dnat-dns-reject", "ip6 qubes dnat-dns", "ip6 qubes dnat-dns-reject"} {
		if out, err := ns.Exec("nft", append([]string{"list", "chain"}, strings.Fields(c)...)...); err == nil {
			t.Errorf("chain %s left after replacing with IPv4-only rules:\n%s", c, out)
		}
	}
	if _, text, _ := listChain(t, ns); !slices.Equal(text, ruleStrings(ipv4Only)) {
		t.Fatalf("ip dnat-dns lists %q", text)
	}
}

// TestReplaceBothFamiliesInOneTransaction: the ruleset generation moves by
// exactly one when both families change, so no reader sees one family new
// and the other old.
func TestReplaceBothFamiliesInOneTransaction(t *testing.T) {
	ns, nft := newNetVM(t)
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	sets := [][]Rule{
		PlanDual(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("fd09::1"), testsupport.Addrs("192.0.2.1"), testsupport.Addrs("2001:db8::53")),
		PlanDual(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("fd09::1"), nil, testsupport.Addrs("2001:db8::54")),
		PlanDual(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("fd09::1"), testsupport.Addrs("192.0.2.2"), nil),
	}
	for i, rules := range sets {
		before, err := generation(h)
		if err != nil {
			t.Fatal(err)
		}
		if err := nft.Replace(rules); err != nil {
			t.Fatalf("Replace %d: %v", i, err)
		}
		after, err := generation(h)
		if err != nil {
			t.Fatal(err)
		}
		if after != before+1 {
			t.Fatalf("Replace %d moved the generation %d -> %d, want one transaction", i, before, after)
		}
		if same, err := nft.Matches(rules); err != nil || !same {
			t.Fatalf("Matches after Replace %d = %v, %v", i, same, err)
		}
	}
}
