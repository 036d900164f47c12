// Package dnat points the virtual DNS addresses that client qubes use at the
// network qube's real DNS servers: it plans the rules of chain dnat-dns in
// table ip qubes, compares them with the kernel's and replaces the chain in
// one nftables transaction when they differ.
package dnat

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
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
// server, or drops them when Real is the zero Addr.
type Rule struct {
	Virtual netip.Addr
	Proto   Proto
	Real    netip.Addr
}

// Plan returns the rules for the virtual addresses, in order: each virtual
// address is paired with the real servers taken in turn (cycling when there
// are fewer real servers than virtual ones), udp first, then tcp. With no
// real server every virtual address gets drop rules, so queries leak
// nowhere. Addresses that are not IPv4 are ignored.
func Plan(virtual, real []netip.Addr) []Rule {
	real = onlyIPv4(real)
	var rules []Rule
	for i, v := range onlyIPv4(virtual) {
		var target netip.Addr
		if len(real) > 0 {
			target = real[i%len(real)]
		}
		rules = append(rules, Rule{Virtual: v, Proto: UDP, Real: target}, Rule{Virtual: v, Proto: TCP, Real: target})
	}
	return rules
}

func onlyIPv4(addrs []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if a.Is4() {
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

// String returns the rule in nft syntax, as nft lists it.
func (r Rule) String() string {
	verdict := "drop"
	if r.Real.IsValid() {
		verdict = "dnat to " + r.Real.String()
	}
	return fmt.Sprintf("ip daddr %s %s dport 53 %s", r.Virtual, r.Proto, verdict)
}

// Exprs returns the rule's nftables expressions, the same ones nft
// generates from the rule's text, so that rules written by either compare
// equal when read back.
func (r Rule) Exprs() []expr.Any {
	virtual := r.Virtual.As4()
	exprs := []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: virtual[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(r.Proto)}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(53)},
	}
	if !r.Real.IsValid() {
		return append(exprs, &expr.Verdict{Kind: expr.VerdictDrop})
	}
	real := r.Real.As4()
	return append(exprs,
		&expr.Immediate{Register: 1, Data: real[:]},
		// The kernel reports the address range's upper register equal to
		// the lower one; setting it here keeps read-back comparison exact.
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegAddrMax: 1})
}

// Script returns the nft transaction that installs rules the way upstream's
// script does: ensure the table and chain exist, delete the chain and
// recreate it, all in one transaction (nft -f applies a file atomically).
func Script(rules []Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "add table ip %s\nadd chain ip %s %s\ndelete chain ip %s %s\n", TableName, TableName, ChainName, TableName, ChainName)
	fmt.Fprintf(&b, "table ip %s {\n\tchain %s {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n", TableName, ChainName)
	for _, r := range rules {
		fmt.Fprintf(&b, "\t\t%s\n", r)
	}
	b.WriteString("\t}\n}\n")
	return b.String()
}
