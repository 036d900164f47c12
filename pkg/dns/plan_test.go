package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

func ruleStrings(rules []Rule) []string {
	var out []string
	for _, r := range rules {
		out = append(out, r.String())
	}
	return out
}

func TestPlan(t *testing.T) {
	virtual := [][]netip.Addr{nil, testsupport.Addrs("10.139.1.1"), testsupport.Addrs("10.139.1.1", "10.139.1.2")}
	real := [][]netip.Addr{nil, testsupport.Addrs("1.1.1.1"), testsupport.Addrs("1.1.1.1", "9.9.9.9"), testsupport.Addrs("1.1.1.1", "9.9.9.9", "8.8.8.8")}
	drop1 := []string{"ip daddr 10.139.1.1 udp dport 53 drop", "ip daddr 10.139.1.1 tcp dport 53 drop"}
	drop2 := []string{"ip daddr 10.139.1.2 udp dport 53 drop", "ip daddr 10.139.1.2 tcp dport 53 drop"}
	to := func(v, r string) []string {
		return []string{"ip daddr " + v + " udp dport 53 dnat to " + r, "ip daddr " + v + " tcp dport 53 dnat to " + r}
	}
	// want[v][r]: rules for len(virtual)==v and len(real)==r.
	want := [3][4][]string{
		{nil, nil, nil, nil},
		{drop1, to("10.139.1.1", "1.1.1.1"), to("10.139.1.1", "1.1.1.1"), to("10.139.1.1", "1.1.1.1")},
		{
			slices.Concat(drop1, drop2),
			slices.Concat(to("10.139.1.1", "1.1.1.1"), to("10.139.1.2", "1.1.1.1")), // cycling
			slices.Concat(to("10.139.1.1", "1.1.1.1"), to("10.139.1.2", "9.9.9.9")),
			slices.Concat(to("10.139.1.1", "1.1.1.1"), to("10.139.1.2", "9.9.9.9")), // third unused
		},
	}
	for v := range virtual {
		for r := range real {
			got := ruleStrings(Plan(virtual[v], real[r]))
			if !slices.Equal(got, want[v][r]) {
				t.Errorf("Plan(%v, %v) =\n%s\nwant\n%s", virtual[v], real[r], strings.Join(got, "\n"), strings.Join(want[v][r], "\n"))
			}
		}
	}
}

func TestPlanIgnoresNonIPv4(t *testing.T) {
	got := ruleStrings(Plan(testsupport.Addrs("fd00::1", "10.139.1.1"), testsupport.Addrs("2001:db8::53", "::ffff:1.2.3.4")))
	want := []string{"ip daddr 10.139.1.1 udp dport 53 drop", "ip daddr 10.139.1.1 tcp dport 53 drop"}
	if !slices.Equal(got, want) {
		t.Fatalf("Plan = %v, want %v", got, want)
	}
}

func TestParseVirtual(t *testing.T) {
	tests := []struct {
		value string
		want  string // "" for rejected
	}{
		{"10.139.1.1", "10.139.1.1"},
		{"10.139.1.2", "10.139.1.2"},
		{"0.0.0.0", "0.0.0.0"},
		{"", ""},
		{"10.139.1.1\n", ""}, // upstream does not strip
		{" 10.139.1.1", ""},
		{"10.139.1", ""},
		{"10.139.1.1.1", ""},
		{"10.139.1.256", ""},
		{"010.139.1.1", ""},
		{"10.139.1.1/32", ""},
		{"10.139.1.1%eth0", ""},
		{"fd09:24ef:4179::a8b:1", ""},
		{"::ffff:10.139.1.1", ""},
		{"localhost", ""},
		{"10.139.1.1; flush ruleset", ""},
		{"\xff\xfe", ""},
		{"１0.139.1.1", ""},
	}
	for _, tt := range tests {
		got, ok := ParseVirtual([]byte(tt.value))
		if tt.want == "" {
			if ok {
				t.Errorf("ParseVirtual(%q) = %v, want rejected", tt.value, got)
			}
			continue
		}
		if !ok || got.String() != tt.want {
			t.Errorf("ParseVirtual(%q) = %v, %v; want %s", tt.value, got, ok, tt.want)
		}
	}
}

func TestScript(t *testing.T) {
	got := Script(Plan(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("192.0.2.53")))
	want := `add table ip qubes
add chain ip qubes dnat-dns
delete chain ip qubes dnat-dns
table ip qubes {
	chain dnat-dns {
		type nat hook prerouting priority dstnat; policy accept;
		ip daddr 10.139.1.1 udp dport 53 dnat to 192.0.2.53
		ip daddr 10.139.1.1 tcp dport 53 dnat to 192.0.2.53
	}
}
`
	if got != want {
		t.Fatalf("Script =\n%s\nwant\n%s", got, want)
	}
}
