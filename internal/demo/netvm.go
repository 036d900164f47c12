package main

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/qubes-netvm/qnet/pkg/sandbox"
)

// snapshot is what the hotplug script may change in the network qube, one
// readable line per object (route, neighbour, address, set element, link,
// NAT namespace), sorted, so two snapshots diff line by line.
type snapshot []string

// linkPrefix starts the lines describing vif links: offline leaves a link
// as it is (Xen deletes the device afterwards), so "clean" ignores them.
const linkPrefix = "link "

// natSuffix ends the name of a NAT-mode client's private namespace.
const natSuffix = "-nat"

func takeSnapshot(netvm *sandbox.NS) (snapshot, error) {
	var lines []string
	for _, family := range []string{"-4", "-6"} {
		var routes []struct {
			Dst     string `json:"dst"`
			Gateway string `json:"gateway"`
			Dev     string `json:"dev"`
			Metric  int    `json:"metric"`
		}
		if err := netvm.IPJSON(&routes, family, "route", "show"); err != nil {
			return nil, err
		}
		for _, r := range routes {
			if strings.HasPrefix(r.Dst, "fe80:") { // the kernel's link-local route of any link that is up
				continue
			}
			line := "route " + r.Dst
			if r.Gateway != "" {
				line += " via " + r.Gateway
			}
			lines = append(lines, fmt.Sprintf("%s dev %s metric %d", line, r.Dev, r.Metric))
		}
	}

	var neighbours []struct {
		Dst    string `json:"dst"`
		Dev    string `json:"dev"`
		LLAddr string `json:"lladdr"`
	}
	if err := netvm.IPJSON(&neighbours, "neigh", "show", "nud", "permanent"); err != nil {
		return nil, err
	}
	for _, n := range neighbours {
		lines = append(lines, fmt.Sprintf("neighbour %s lladdr %s dev %s permanent", n.Dst, n.LLAddr, n.Dev))
	}

	var links []struct {
		Ifname   string   `json:"ifname"`
		Flags    []string `json:"flags"`
		Group    string   `json:"group"`
		AddrInfo []struct {
			Local     string `json:"local"`
			Prefixlen int    `json:"prefixlen"`
			Scope     string `json:"scope"`
		} `json:"addr_info"`
	}
	if err := netvm.IPJSON(&links, "-d", "addr", "show"); err != nil {
		return nil, err
	}
	for _, l := range links {
		if strings.HasPrefix(l.Ifname, "vif") {
			state := "down"
			if slices.Contains(l.Flags, "UP") {
				state = "up"
			}
			lines = append(lines, fmt.Sprintf("%s%s %s group %s", linkPrefix, l.Ifname, state, l.Group))
		}
		for _, a := range l.AddrInfo {
			if a.Scope == "global" {
				lines = append(lines, fmt.Sprintf("address %s/%d dev %s", a.Local, a.Prefixlen, l.Ifname))
			}
		}
	}

	for _, family := range []string{"ip", "ip6"} {
		for _, set := range []string{"allowed", "downstream"} {
			elems, err := netvm.SetElements(family, "qubes", set)
			if err != nil {
				return nil, err
			}
			for _, e := range elems {
				lines = append(lines, fmt.Sprintf("set %s qubes %s element %s", family, set, e))
			}
		}
	}

	names, err := natNamespaces()
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		lines = append(lines, "namespace "+name)
	}
	slices.Sort(lines)
	return lines, nil
}

// natNamespaces lists the NAT-mode namespaces (vifD.N-nat) that exist.
func natNamespaces() ([]string, error) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("list network namespaces: %w", err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "vif") && strings.HasSuffix(e.Name(), natSuffix) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// changes lists the lines only in after ("+ ") and only in before ("- ").
func changes(before, after snapshot) []string {
	var out []string
	for _, l := range after {
		if !slices.Contains(before, l) {
			out = append(out, "+ "+l)
		}
	}
	for _, l := range before {
		if !slices.Contains(after, l) {
			out = append(out, "- "+l)
		}
	}
	return out
}

// withoutLinks drops the vif link lines.
func (s snapshot) withoutLinks() snapshot {
	return slices.DeleteFunc(slices.Clone(s), func(l string) bool { return strings.HasPrefix(l, linkPrefix) })
}

// dnatRules lists the rules of chain ip qubes dnat-dns as nft prints them.
func dnatRules(netvm *sandbox.NS) ([]string, error) {
	out, err := netvm.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns")
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		l = strings.TrimSpace(l)
		if strings.HasPrefix(l, "ip daddr") {
			rules = append(rules, l)
		}
	}
	return rules, nil
}
