// Plan: the rules of chain dnat-dns in table ip qubes (and, when QubesDB
// names IPv6 virtual addresses, in table ip6 qubes), which point the
// virtual DNS addresses at the real servers.

package dns

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// Proto is the transport protocol a rule matches.
type Proto uint8

// The protocols DNS is served over.
const (
	UDP Proto = unix.IPPROTO_UDP
	TCP Proto = unix.IPPROTO_TCP
)

func (p Proto) String() string {
	switch p {
	case UDP:
		return "udp"
	case TCP:
		return "tcp"
	}
	return fmt.Sprintf("l4proto %d", uint8(p))
}

// Rule sends DNS queries for one virtual address and protocol to a real
// server, or, when Real is the zero Addr, drops them or (Reject) refuses
// them at once. The address family is Virtual's.
type Rule struct {
	Virtual netip.Addr
	Proto   Proto
	Real    netip.Addr
	// Reject, for a rule without Real, answers with an ICMP(v6) port
	// unreachable (UDP) or a TCP reset instead of dropping silently, so
	// that a client's resolver moves on to the other family at once.
	Reject bool
}

// Plan returns the rules for the virtual addresses, in order: each virtual
// address is paired with the real servers taken in turn (cycling when there
// are fewer real servers than virtual ones), udp first, then tcp. With no
// real server every virtual address gets drop rules, so queries leak
// nowhere. Addresses that are not IPv4 are ignored.
func Plan(virtual, real []netip.Addr) []Rule {
	return planFamily(only(virtual, netip.Addr.Is4), only(real, netip.Addr.Is4), false)
}

// PlanDual returns the rules when QubesDB names IPv6 virtual addresses
// (virtual6 not empty): IPv4 rules as Plan makes them, then IPv6 rules
// made the same way, except that a family without real servers gets
// rejecting rules rather than dropping ones. Without IPv6 virtual
// addresses it returns exactly Plan(virtual4, real4).
func PlanDual(virtual4, virtual6, real4, real6 []netip.Addr) []Rule {
	virtual6 = only(virtual6, is6)
	if len(virtual6) == 0 {
		return Plan(virtual4, real4)
	}
	return append(planFamily(only(virtual4, netip.Addr.Is4), only(real4, netip.Addr.Is4), true),
		planFamily(virtual6, only(real6, is6), true)...)
}

func planFamily(virtual, real []netip.Addr, reject bool) []Rule {
	var rules []Rule
	for i, v := range virtual {
		var target netip.Addr
		if len(real) > 0 {
			target = real[i%len(real)]
		}
		refuse := reject && !target.IsValid()
		rules = append(rules, Rule{Virtual: v, Proto: UDP, Real: target, Reject: refuse}, Rule{Virtual: v, Proto: TCP, Real: target, Reject: refuse})
	}
	return rules
}

// is6 holds for a plain IPv6 address: not IPv4-mapped, no zone.
func is6(a netip.Addr) bool { return a.Is6() && !a.Is4In6() && a.Zone() == "" }

func only(addrs []netip.Addr, keep func(netip.Addr) bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// ParseVirtual parses a QubesDB value naming a virtual DNS address. Like
// upstream it takes the bytes as they are (no trimming) and accepts only a
// strict dotted-decimal IPv4 address.
func ParseVirtual(value []byte) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(string(value))
	if err != nil || !addr.Is4() {
		return netip.Addr{}, false
	}
	return addr, true
}

// ParseVirtual6 parses a QubesDB value naming an IPv6 virtual DNS address:
// the bytes as they are, a plain IPv6 address (no zone, not IPv4-mapped).
func ParseVirtual6(value []byte) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(string(value))
	if err != nil || !is6(addr) {
		return netip.Addr{}, false
	}
	return addr, true
}

// String returns the rule in nft syntax, as nft lists it.
func (r Rule) String() string {
	verdict := "drop"
	switch {
	case r.Real.IsValid():
		verdict = "dnat to " + r.Real.String()
	case r.Reject && r.Proto == TCP:
		verdict = "reject with tcp reset"
	case r.Reject:
		verdict = "reject" // nft's default: ICMP(v6) port unreachable
	}
	return fmt.Sprintf("%s daddr %s %s dport 53 %s", r.family().name, r.Virtual, r.Proto, verdict)
}

// Exprs returns the rule's nftables expressions, the same ones nft
// generates from the rule's text, so that rules written by either compare
// equal when read back.
func (r Rule) Exprs() []expr.Any {
	f := r.family()
	exprs := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.daddrOffset, Len: uint32(r.Virtual.BitLen() / 8)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.Virtual.AsSlice()},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(53)},
	}
	switch {
	case r.Real.IsValid():
		return append(exprs,
			&expr.Immediate{Register: 1, Data: r.Real.AsSlice()},
			// The kernel reports the address range's upper register equal
			// to the lower one; setting it here keeps read-back comparison
			// exact.
			&expr.NAT{Type: expr.NATTypeDestNAT, Family: f.nfproto, RegAddrMin: 1, RegAddrMax: 1})
	case r.Reject && r.Proto == TCP:
		return append(exprs, &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
	case r.Reject:
		return append(exprs, &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: f.portUnreachable})
	}
	return append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
}

// family is what differs between the IPv4 and IPv6 forms of a rule.
type family struct {
	name            string // nft's family keyword, also the address match's
	table           nftables.TableFamily
	nfproto         uint32
	daddrOffset     uint32 // of the destination address in the network header
	portUnreachable uint8  // ICMP or ICMPv6 code
}

var (
	ipv4 = family{"ip", nftables.TableFamilyIPv4, unix.NFPROTO_IPV4, 16, 3}
	ipv6 = family{"ip6", nftables.TableFamilyIPv6, unix.NFPROTO_IPV6, 24, 4}
)

func (r Rule) family() family {
	if r.Virtual.Is4() {
		return ipv4
	}
	return ipv6
}

// Script returns the nft transaction that installs rules the way upstream's
// script does: for each chain that holds rules (and always for the IPv4
// DNAT chain), ensure the table and chain exist, delete the chain and
// recreate it, all in one transaction (nft -f applies a file atomically).
func Script(rules []Rule) string {
	var b strings.Builder
	for _, c := range chainsOf(rules) {
		if !c.present() {
			continue
		}
		f, table := c.family.name, netvm.Table
		fmt.Fprintf(&b, "add table %s %s\nadd chain %s %s %s\ndelete chain %s %s %s\n", f, table, f, table, c.name, f, table, c.name)
		fmt.Fprintf(&b, "table %s %s {\n\tchain %s {\n\t\t%s\n", f, table, c.name, c.hookText)
		for _, r := range c.rules {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n}\n")
	}
	return b.String()
}

// chain is one of the chains this package owns, with the rules planned
// for it.
type chain struct {
	family   family
	name     string
	typ      nftables.ChainType
	priority int32  // offset from dstnat
	hookText string // the chain's hook line as nft lists it
	// always: the chain exists even without rules (the IPv4 DNAT chain,
	// as upstream keeps it); the others exist only while they have rules.
	always bool
	rules  []Rule
}

func (c chain) present() bool { return c.always || len(c.rules) > 0 }

// RejectChainName is the chain of the rejecting rules, beside ChainName in
// each family's table. They do not go in the DNAT chain: a chain of type
// nat is consulted only for a connection's first packet and exists to
// translate addresses; rejecting is filtering. Nor in the base ruleset's
// forward chain, which belongs to the qube's firewall, and which a query
// for an address that has no route would never reach. A filter chain on
// the same prerouting hook, at priority dstnat + 10, sees each query after
// the DNAT chain had its say and before routing could forward it to the
// uplink, so a refused query never leaves (the guarantee the drop rules
// give). The kernel accepts reject in filter chains at prerouting since
// Linux 5.9 (before, only at input, forward and output); Qubes ships
// later kernels.
const RejectChainName = "dnat-dns-reject"

// chainsOf splits rules into this package's chains, in transaction order:
// the IPv4 DNAT chain, the IPv4 reject chain, then the IPv6 ones.
func chainsOf(rules []Rule) []chain {
	const nat = "type nat hook prerouting priority dstnat; policy accept;"
	const filter = "type filter hook prerouting priority dstnat + 10; policy accept;"
	chains := []chain{
		{ipv4, ChainName, nftables.ChainTypeNAT, 0, nat, true, nil},
		{ipv4, RejectChainName, nftables.ChainTypeFilter, 10, filter, false, nil},
		{ipv6, ChainName, nftables.ChainTypeNAT, 0, nat, false, nil},
		{ipv6, RejectChainName, nftables.ChainTypeFilter, 10, filter, false, nil},
	}
	for _, r := range rules {
		i := 0
		if r.Reject {
			i = 1
		}
		if r.family() == ipv6 {
			i += 2
		}
		chains[i].rules = append(chains[i].rules, r)
	}
	return chains
}
