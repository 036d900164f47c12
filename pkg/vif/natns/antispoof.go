package natns

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
)

// The translation table is sent as raw nfnetlink messages rather than
// through google/nftables' Conn: v0.3.0 has no fwd expression, its
// expression interface can't be implemented outside the package, and
// creating the table and chains through Conn.Flush but the fwd rules some
// other way would split the table over two transactions. Here every
// standard expression is still encoded by the library (expr.Marshal); only
// fwd, a single register attribute, is encoded by hand, and table, chains
// and rules go to the kernel in ONE batch, applied all or nothing.
// Forking the library for one expression, or running nft, were the
// alternatives.

const (
	antispoofTable = "antispoof"
	outboundChain  = "antispoof" // ingress of the real vif: from the client
	inboundChain   = "reverse"   // ingress of <vif>-p: from the network qube
)

// exprEncoder yields one expression's NFTA_EXPR_NAME and NFTA_EXPR_DATA
// attributes.
type exprEncoder func() ([]byte, error)

// rule is one rule's expressions, in order.
type rule []exprEncoder

func std(e expr.Any) exprEncoder {
	return func() ([]byte, error) { return expr.Marshal(unix.NFPROTO_NETDEV, e) }
}

// fwdTo is `fwd to <device in register>`: the packet leaves through that
// device as it is, without routing or a new link-layer header.
func fwdTo(register uint32) exprEncoder {
	return func() ([]byte, error) {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.String(unix.NFTA_EXPR_NAME, "fwd")
		ae.Nested(unix.NFTA_EXPR_DATA, func(nae *netlink.AttributeEncoder) error {
			nae.Uint32(unix.NFTA_FWD_SREG_DEV, register)
			return nil
		})
		return ae.Encode()
	}
}

// match compares len(value) bytes at offset from base with value.
func match(base expr.PayloadBase, offset uint32, value []byte) []exprEncoder {
	return []exprEncoder{
		std(&expr.Payload{DestRegister: 1, Base: base, Offset: offset, Len: uint32(len(value))}),
		std(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: value}),
	}
}

// etherType is the netdev family's implicit check that the frame carries
// the protocol a payload match reads.
func etherType(proto uint16) []exprEncoder {
	return []exprEncoder{
		std(&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1}),
		std(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(proto)}),
	}
}

// translateAndForward is `ip <field> <from> ip <field> set <to> fwd to
// <out>`, field being the IPv4 source (offset 12) or destination (16); the
// IPv4 header checksum and the TCP/UDP pseudo-header checksum are fixed up.
func translateAndForward(offset uint32, from, to netip.Addr, out int) rule {
	r := etherType(unix.ETH_P_IP)
	r = append(r, match(expr.PayloadBaseNetworkHeader, offset, from.AsSlice())...)
	return append(r,
		std(&expr.Immediate{Register: 1, Data: to.AsSlice()}),
		std(&expr.Payload{
			OperationType: expr.PayloadWrite, SourceRegister: 1,
			Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4,
			CsumType: expr.CsumTypeInet, CsumOffset: 10, CsumFlags: unix.NFT_PAYLOAD_L4CSUM_PSEUDOHDR,
		}),
		std(&expr.Immediate{Register: 1, Data: binaryutil.NativeEndian.PutUint32(uint32(out))}),
		fwdTo(1),
	)
}

var (
	accept  = std(&expr.Verdict{Kind: expr.VerdictAccept})
	counter = rule{std(&expr.Counter{})}
)

// outboundRules filter what the client sends: its packets from the visible
// address leave with the real one through <vif>-p; well-formed ARP from the
// client (Ethernet/IPv4, its MAC, its visible address) reaches the
// namespace so that the visible gateway answers; the chain's policy drops
// the rest after counting it.
func outboundRules(s Spec, peerIndex int) []rule {
	arp := etherType(unix.ETH_P_ARP)
	arp = append(arp, match(expr.PayloadBaseNetworkHeader, 0, []byte{0, 1, 8, 0})...) // htype 1, ptype IPv4
	arp = append(arp, match(expr.PayloadBaseNetworkHeader, 4, []byte{6, 4})...)       // hlen 6, plen 4
	sender := append(append([]byte{}, s.ClientMAC...), s.VisibleIP.AsSlice()...)
	arp = append(arp, match(expr.PayloadBaseNetworkHeader, 8, sender)...) // sender MAC and IPv4
	return []rule{
		translateAndForward(12, s.VisibleIP, s.RealIP, peerIndex),
		append(arp, accept),
		counter,
	}
}

// inboundRules let packets for the real address through to the client with
// the visible one, and ARP from the network qube reach the namespace.
func inboundRules(s Spec, vifIndex int) []rule {
	arp := []exprEncoder{
		std(&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1}),
		std(&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint16(unix.ARPHRD_ETHER)}),
	}
	arp = append(arp, match(expr.PayloadBaseLLHeader, 12, binaryutil.BigEndian.PutUint16(unix.ETH_P_ARP))...)
	return []rule{
		translateAndForward(16, s.RealIP, s.VisibleIP, vifIndex),
		append(arp, accept),
		counter,
	}
}

// antispoofBatch is the whole table netdev antispoof as the messages of
// one nfnetlink batch; vifIndex and peerIndex are the namespace's indexes of the real vif
// and <vif>-p, the fwd targets.
func antispoofBatch(s Spec, vifIndex, peerIndex int) ([]netlink.Message, error) {
	chains := []struct {
		name, device string
		rules        []rule
	}{
		{outboundChain, s.Vif, outboundRules(s, peerIndex)},
		{inboundChain, peerName(s.Vif), inboundRules(s, vifIndex)},
	}

	var msgs []netlink.Message
	add := func(msgType int, flags netlink.HeaderFlags, attrs func(ae *netlink.AttributeEncoder)) error {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		attrs(ae)
		data, err := ae.Encode()
		if err != nil {
			return err
		}
		msgs = append(msgs, nfnl.Request(nfnl.SubsysNftables, msgType, unix.NFPROTO_NETDEV, netlink.Create|flags, data))
		return nil
	}

	if err := add(unix.NFT_MSG_NEWTABLE, 0, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_TABLE_NAME, antispoofTable)
	}); err != nil {
		return nil, fmt.Errorf("encode table netdev %s: %w", antispoofTable, err)
	}
	for _, c := range chains {
		if err := add(unix.NFT_MSG_NEWCHAIN, 0, func(ae *netlink.AttributeEncoder) {
			ae.String(unix.NFTA_CHAIN_TABLE, antispoofTable)
			ae.String(unix.NFTA_CHAIN_NAME, c.name)
			ae.Nested(unix.NFTA_CHAIN_HOOK, func(nae *netlink.AttributeEncoder) error {
				nae.Uint32(unix.NFTA_HOOK_HOOKNUM, unix.NF_NETDEV_INGRESS)
				nae.Uint32(unix.NFTA_HOOK_PRIORITY, 0) // priority filter
				nae.String(unix.NFTA_HOOK_DEV, c.device)
				return nil
			})
			ae.Uint32(unix.NFTA_CHAIN_POLICY, uint32(nftables.ChainPolicyDrop))
			ae.String(unix.NFTA_CHAIN_TYPE, "filter")
		}); err != nil {
			return nil, fmt.Errorf("encode chain %s: %w", c.name, err)
		}
		for i, r := range c.rules {
			if err := add(unix.NFT_MSG_NEWRULE, unix.NLM_F_APPEND, func(ae *netlink.AttributeEncoder) {
				ae.String(unix.NFTA_RULE_TABLE, antispoofTable)
				ae.String(unix.NFTA_RULE_CHAIN, c.name)
				ae.Nested(unix.NFTA_RULE_EXPRESSIONS, func(nae *netlink.AttributeEncoder) error {
					for _, e := range r {
						nae.Do(netlink.Nested|unix.NFTA_LIST_ELEM, e)
					}
					return nil
				})
			}); err != nil {
				return nil, fmt.Errorf("encode rule %d of chain %s: %w", i+1, c.name, err)
			}
		}
	}
	return msgs, nil
}

// installAntispoof sends the table to the namespace as one transaction
// and waits for the kernel's verdict on every message (package nfnl).
func installAntispoof(ns netns.NsHandle, s Spec, vifIndex, peerIndex int) error {
	msgs, err := antispoofBatch(s, vifIndex, peerIndex)
	if err != nil {
		return err
	}
	conn, err := nfnl.Dial(int(ns))
	if err != nil {
		return fmt.Errorf("namespace %s: %w", NamespaceName(s.Vif), err)
	}
	defer conn.Close()
	if err := conn.Batch(msgs); err != nil {
		return fmt.Errorf("create table netdev %s in namespace %s: %w", antispoofTable, NamespaceName(s.Vif), err)
	}
	return nil
}
