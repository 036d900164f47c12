// This file keeps a vif's entries in the anti-spoofing sets of the
// base ruleset: `allowed` (interface . source address) and `downstream`
// (address) in tables `ip qubes` and `ip6 qubes`. A packet from a client
// qube passes the prerouting filter only when its interface and source
// address form an `allowed` element.

package vif

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// Set names in the base ruleset.
const (
	AllowedSet    = "allowed"
	DownstreamSet = "downstream"
)

// VifAddr is one address of one vif: an element of each set.
type VifAddr struct {
	Vif  string
	Addr netip.Addr
}

// Family is the nftables family of the entry's address ("ip" or "ip6").
func (e VifAddr) Family() string {
	if e.Addr.Is4() {
		return "ip"
	}
	return "ip6"
}

// AllowedElement renders the `allowed` element as nft prints it.
func (e VifAddr) AllowedElement() string { return fmt.Sprintf("%q . %s", e.Vif, e.Addr) }

func (e VifAddr) tableFamily() nftables.TableFamily {
	if e.Addr.Is4() {
		return nftables.TableFamilyIPv4
	}
	return nftables.TableFamilyIPv6
}

// allowedKey is the concatenated key: the interface name NUL-padded to
// IFNAMSIZ, then the address in network order (both fields are multiples of
// four bytes, so no padding between them).
func (e VifAddr) allowedKey() ([]byte, error) {
	if len(e.Vif) == 0 || len(e.Vif) >= unix.IFNAMSIZ {
		return nil, fmt.Errorf("interface name %q does not fit an nftables ifname (1 to %d bytes)", e.Vif, unix.IFNAMSIZ-1)
	}
	k := make([]byte, unix.IFNAMSIZ, unix.IFNAMSIZ+16)
	copy(k, e.Vif)
	return append(k, e.Addr.AsSlice()...), nil
}

func set(fam nftables.TableFamily, name string) *nftables.Set {
	return &nftables.Set{Table: &nftables.Table{Name: netvm.Table, Family: fam}, Name: name}
}

// checkBaseRuleset verifies that the base ruleset's sets exist for every family the
// entries use, with the expected key types. Run it before changing anything:
// without these sets the vif cannot be protected.
func checkBaseRuleset(c *nftables.Conn, entries []VifAddr) error {
	seen := map[nftables.TableFamily]bool{}
	for _, e := range entries {
		fam := e.tableFamily()
		if seen[fam] {
			continue
		}
		seen[fam] = true
		want := map[string]string{AllowedSet: "ifname . ipv4_addr", DownstreamSet: "ipv4_addr"}
		if fam == nftables.TableFamilyIPv6 {
			want = map[string]string{AllowedSet: "ifname . ipv6_addr", DownstreamSet: "ipv6_addr"}
		}
		for _, name := range []string{AllowedSet, DownstreamSet} {
			s, err := c.GetSetByName(&nftables.Table{Name: netvm.Table, Family: fam}, name)
			if err != nil {
				return fmt.Errorf("base ruleset missing: set %s %s %s: %w (is the qubes-iptables service running?)", e.Family(), netvm.Table, name, err)
			}
			if s.KeyType.Name != want[name] {
				return fmt.Errorf("base ruleset: set %s %s %s has type %q, want %q", e.Family(), netvm.Table, name, s.KeyType.Name, want[name])
			}
		}
	}
	return nil
}

// elementsPresent reports which of the entry's two elements exist, asking the kernel
// for exactly these keys rather than dumping sets that grow with the number
// of client qubes.
func elementsPresent(c *nfnl.Conn, e VifAddr) (allowed, downstream bool, err error) {
	key, err := e.allowedKey()
	if err != nil {
		return false, false, err
	}
	if allowed, err = hasElement(c, e.tableFamily(), AllowedSet, key); err != nil {
		return false, false, fmt.Errorf("look up %s in set %s %s %s: %w", e.AllowedElement(), e.Family(), netvm.Table, AllowedSet, err)
	}
	if downstream, err = hasElement(c, e.tableFamily(), DownstreamSet, e.Addr.AsSlice()); err != nil {
		return false, false, fmt.Errorf("look up %s in set %s %s %s: %w", e.Addr, e.Family(), netvm.Table, DownstreamSet, err)
	}
	return allowed, downstream, nil
}

// hasElement sends a non-dump NFT_MSG_GETSETELEM for one key (what
// `nft get element` does): the kernel answers with the element or ENOENT.
func hasElement(c *nfnl.Conn, fam nftables.TableFamily, setName string, key []byte) (bool, error) {
	attrs, err := nfnl.Encode(func(ae *netlink.AttributeEncoder) {
		ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, netvm.Table)
		ae.String(unix.NFTA_SET_ELEM_LIST_SET, setName)
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
			list.Nested(unix.NFTA_LIST_ELEM, func(elem *netlink.AttributeEncoder) error {
				elem.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
					k.Bytes(unix.NFTA_DATA_VALUE, key)
					return nil
				})
				return nil
			})
			return nil
		})
	})
	if err != nil {
		return false, err
	}
	_, found, err := c.Get(nfnl.Request(nfnl.SubsysNftables, unix.NFT_MSG_GETSETELEM, byte(fam), 0, attrs))
	return found, err
}

// Elements names, among some entries, those whose `allowed` element and
// those whose `downstream` element a change concerns.
type Elements struct {
	Allowed    []VifAddr
	Downstream []VifAddr
}

func (els Elements) empty() bool { return len(els.Allowed)+len(els.Downstream) == 0 }

// queueAddElements queues the addition of els in c's batch; the caller
// flushes.
func queueAddElements(c *nftables.Conn, els Elements) error {
	return queueElements(els, c.SetAddElements)
}

// queueDeleteElements queues the removal of els in c's batch. Deleting an
// absent element aborts the whole batch, so callers only pass elements that
// elementsPresent reported.
func queueDeleteElements(c *nftables.Conn, els Elements) error {
	return queueElements(els, c.SetDeleteElements)
}

func queueElements(els Elements, op func(*nftables.Set, []nftables.SetElement) error) error {
	for _, e := range els.Allowed {
		key, err := e.allowedKey()
		if err != nil {
			return err
		}
		if err := op(set(e.tableFamily(), AllowedSet), []nftables.SetElement{{Key: key}}); err != nil {
			return fmt.Errorf("element %s of set %s %s %s: %w", e.AllowedElement(), e.Family(), netvm.Table, AllowedSet, err)
		}
	}
	for _, e := range els.Downstream {
		if err := op(set(e.tableFamily(), DownstreamSet), []nftables.SetElement{{Key: e.Addr.AsSlice()}}); err != nil {
			return fmt.Errorf("element %s of set %s %s %s: %w", e.Addr, e.Family(), netvm.Table, DownstreamSet, err)
		}
	}
	return nil
}
