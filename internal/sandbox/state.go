package sandbox

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/qubes-netvm/qnet/pkg/netvm"
)

var (
	trafficCounters = regexp.MustCompile(`counter packets \d+ bytes \d+`)
	// The kernel attaches a device's default qdisc the first time it comes
	// up and keeps it after it goes down again: a side effect of "up", not
	// state anyone configured.
	qdisc = regexp.MustCompile(`qdisc \S+`)
)

// KernelState captures, as independent tools print it, the namespace's
// state that the project's binaries may touch: links, addresses, routes,
// permanent neighbours, the nftables ruleset and the per-interface
// sysctls. What changes on its own (traffic counters, dynamic neighbour
// entries, the qdisc the kernel attaches at first "up") is left out, so two captures compare equal when nothing was
// changed.
func (n *NS) KernelState() (string, error) {
	var b strings.Builder
	for _, cmd := range [][]string{
		{"ip", "-d", "link", "show"},
		{"ip", "addr", "show"},
		{"ip", "route", "show", "table", "all"},
		{"ip", "-6", "route", "show", "table", "all"},
		{"ip", "neigh", "show", "nud", "permanent"},
		{"ip", "-6", "neigh", "show", "nud", "permanent"},
		{"nft", "list", "ruleset"},
		{"sh", "-c", "grep -rs . /proc/sys/net/ipv4/conf /proc/sys/net/ipv6/conf /proc/sys/net/ipv4/neigh /proc/sys/net/ipv6/neigh | grep -v /stable_secret || true"},
	} {
		out, err := n.Exec(cmd[0], cmd[1:]...)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "### %s\n%s", strings.Join(cmd, " "), qdisc.ReplaceAllString(trafficCounters.ReplaceAllString(string(out), "counter"), "qdisc"))
	}
	return b.String(), nil
}

// StateDiff lists the lines only in a (prefixed "- ") and only in b ("+ ").
func StateDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var d strings.Builder
	for _, l := range al {
		if !slices.Contains(bl, l) {
			d.WriteString("- " + l + "\n")
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			d.WriteString("+ " + l + "\n")
		}
	}
	return d.String()
}

// AntispoofDrops sums the packet counters of the base ruleset's antispoof
// chain of family ("ip" or "ip6"), which count the spoofed packets it
// dropped.
func (n *NS) AntispoofDrops(family string) (uint64, error) {
	return n.CounterPackets("chain", family, netvm.Table, "antispoof")
}

// CounterPackets sums the packet counters of every rule in what
// `nft -j list <object...>` prints (a table or a chain).
func (n *NS) CounterPackets(object ...string) (uint64, error) {
	var listing struct {
		Nftables []struct {
			Rule *struct {
				Expr []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := n.NftJSON(&listing, append([]string{"list"}, object...)...); err != nil {
		return 0, err
	}
	var packets uint64
	for _, obj := range listing.Nftables {
		if obj.Rule == nil {
			continue
		}
		for _, e := range obj.Rule.Expr {
			if e.Counter != nil {
				packets += e.Counter.Packets
			}
		}
	}
	return packets, nil
}
