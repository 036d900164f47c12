// Package natns puts a client qube's vif behind a private network namespace
// that translates the client's visible address to its real one (Qubes "NAT
// mode" for mapped addresses, upstream's vif-qubes-nat.sh), and takes it
// down again. It is the hotplug tool's NAT mode: pkg/vif's NAT steps
// (nat.go there) call Setup and Teardown.
//
// Layout, for a vif named V:
//
//	client ── V (real vif) ┆ namespace V-nat ┆ V-p ── V (veth) ── network qube
//	          visible-gateway                 real IP
//
// Inside V-nat a netdev table rewrites the client's visible source address to
// its real one on the way out and the real destination address back to the
// visible one on the way in, moving packets between the two devices at
// ingress; the network qube only ever sees the real address, the client only
// its visible one.
//
// Every function works relative to the network namespace of the calling
// thread; a caller that switched namespaces must hold its thread locked.
// The calling thread itself is never switched.
package natns

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/qubes-netvm/qnet/internal/ifname"
	"github.com/qubes-netvm/qnet/internal/sysctl"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Spec is what NAT mode needs to know about one vif.
type Spec struct {
	Vif            string           // the Xen vif as named in the network qube, e.g. "vif9.0"
	ClientMAC      net.HardwareAddr // the client's MAC (XenStore), given to <vif>-p and used in ARP checks
	RealIP         netip.Addr       // the client's real IPv4, the one the network qube routes
	VisibleIP      netip.Addr       // the IPv4 the client has configured
	VisibleGateway netip.Addr       // the gateway the client has configured
	Gateway        netip.Addr       // the network qube's own ("back") IPv4, as clients see their gateway
}

// outerMAC is the MAC of the veth end left in the network qube: the same as
// Xen gives every backend vif, so tools that ignore vifs by MAC
// (NetworkManager) keep ignoring it.
var outerMAC = net.HardwareAddr{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff}

// checkVif applies the project's one interface-name rule, so that Teardown
// (offline) accepts every name online accepted.
func checkVif(vif string) error {
	if err := ifname.Check(vif); err != nil {
		return fmt.Errorf("NAT mode: %w", err)
	}
	return nil
}

// NamespaceName is the name of the private namespace of vif, as `ip netns`
// lists it.
func NamespaceName(vif string) string { return vif + "-nat" }

// peerName is the name of the veth end inside the namespace.
func peerName(vif string) string { return vif + "-p" }

// Validate checks that the spec describes a usable NAT setup. NAT mode needs
// a visible address different from the real one: with equal addresses the
// caller must use plain routed mode instead.
func (s Spec) Validate() error {
	if err := checkVif(s.Vif); err != nil {
		return err
	}
	if p := peerName(s.Vif); len(p) > ifname.MaxLen {
		return fmt.Errorf("NAT mode: interface name %q is too long: the namespace's end %q must fit in %d characters", s.Vif, p, ifname.MaxLen)
	}
	if len(s.ClientMAC) != 6 {
		return fmt.Errorf("NAT mode for %s: client MAC %q is not a 6-byte Ethernet address", s.Vif, s.ClientMAC)
	}
	for _, a := range []struct {
		what string
		addr netip.Addr
	}{
		{"real IP", s.RealIP},
		{"visible IP", s.VisibleIP},
		{"visible gateway", s.VisibleGateway},
		{"gateway", s.Gateway},
	} {
		if !a.addr.Is4() {
			return fmt.Errorf("NAT mode for %s: %s %q is not an IPv4 address (IPv6 is not supported in NAT mode)", s.Vif, a.what, a.addr)
		}
	}
	if s.VisibleIP == s.RealIP {
		return fmt.Errorf("NAT mode for %s: visible IP %s equals the real IP: nothing to translate", s.Vif, s.VisibleIP)
	}
	if s.VisibleGateway == s.VisibleIP {
		return fmt.Errorf("NAT mode for %s: visible gateway %s equals the visible IP", s.Vif, s.VisibleGateway)
	}
	if s.Gateway == s.RealIP {
		return fmt.Errorf("NAT mode for %s: gateway %s equals the real IP", s.Vif, s.Gateway)
	}
	return nil
}

// Setup moves s.Vif into a new namespace <vif>-nat and leaves in its place,
// under the same name, the outer end of a veth pair whose traffic carries
// the real address. A namespace left over from an earlier run is torn down
// first, so a restart ends with exactly one. On failure everything Setup made
// is removed and the real vif is back in the calling namespace under its
// name. The returned undo reverts a successful Setup the same way Teardown
// does and, like it, acts relative to the namespace of the thread that
// calls it.
func Setup(s Spec) (undo func() error, err error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	caller, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("NAT mode for %s: open the calling thread's network namespace: %w", s.Vif, err)
	}
	defer caller.Close()

	if err := dismantle(caller, s.Vif); err != nil {
		return nil, fmt.Errorf("NAT mode for %s: remove leftover namespace: %w", s.Vif, err)
	}
	if err := build(caller, s); err != nil {
		err = fmt.Errorf("NAT mode for %s: %w", s.Vif, err)
		if derr := dismantle(caller, s.Vif); derr != nil {
			err = errors.Join(err, fmt.Errorf("undo NAT mode for %s: %w", s.Vif, derr))
		}
		return nil, err
	}
	return func() error { return Teardown(s.Vif) }, nil
}

// build does Setup's work on a clean slate; dismantle undoes any prefix of it.
func build(caller netns.NsHandle, s Spec) error {
	outside, err := netlink.NewHandleAt(caller, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in the calling namespace: %w", err)
	}
	defer outside.Close()
	real, err := outside.LinkByName(s.Vif)
	if err != nil {
		return fmt.Errorf("find %s: %w", s.Vif, err)
	}

	name := NamespaceName(s.Vif)
	if err := createNamed(name, prepareNamespace); err != nil {
		return err
	}
	nat, err := netns.GetFromPath(namespacePath(name))
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer nat.Close()

	if err := outside.LinkSetNsFd(real, int(nat)); err != nil {
		return fmt.Errorf("move %s into namespace %s: %w", s.Vif, name, err)
	}
	// The pair is created with each end already where it belongs, so <vif>-p
	// never appears in the calling namespace.
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{
			Name:         peerName(s.Vif),
			HardwareAddr: s.ClientMAC,
			Namespace:    netlink.NsFd(nat),
		},
		PeerName:         s.Vif,
		PeerHardwareAddr: outerMAC,
		PeerNamespace:    netlink.NsFd(caller),
	}
	if err := outside.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth pair %s (in %s) / %s: %w", peerName(s.Vif), name, s.Vif, err)
	}
	return configureInside(nat, s)
}

// prepareNamespace runs on a thread inside the new namespace before it gets
// its name. IPv6 is turned off through the namespace's default rather than
// per device before the move (as upstream tries): the kernel rebuilds a
// device's IPv6 state from the new namespace's defaults when the device
// changes namespace, so a per-device setting made outside does not survive
// the move, while the default does apply to both ends as they arrive.
func prepareNamespace() error {
	if err := sysctl.Write("net/ipv4/ip_forward", "1"); err != nil {
		return err
	}
	err := sysctl.Write("net/ipv6/conf/default/disable_ipv6", "1")
	if errors.Is(err, fs.ErrNotExist) {
		return nil // a kernel without IPv6 has nothing to disable
	}
	return err
}

// configureInside installs the translation table, the neighbours, the
// addresses, and brings both devices up, all inside the namespace.
func configureInside(nat netns.NsHandle, s Spec) error {
	inside, err := netlink.NewHandleAt(nat, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in namespace %s: %w", NamespaceName(s.Vif), err)
	}
	defer inside.Close()
	real, err := inside.LinkByName(s.Vif)
	if err != nil {
		return fmt.Errorf("find %s in namespace %s: %w", s.Vif, NamespaceName(s.Vif), err)
	}
	peer, err := inside.LinkByName(peerName(s.Vif))
	if err != nil {
		return fmt.Errorf("find %s in namespace %s: %w", peerName(s.Vif), NamespaceName(s.Vif), err)
	}

	if err := installAntispoof(nat, s, real.Attrs().Index, peer.Attrs().Index); err != nil {
		return err
	}
	for _, n := range []struct {
		link netlink.Link
		ip   netip.Addr
		mac  net.HardwareAddr
	}{
		{real, s.VisibleIP, s.ClientMAC}, // the client as it knows itself
		{peer, s.Gateway, outerMAC},      // the network qube behind the veth
	} {
		neigh := &netlink.Neigh{LinkIndex: n.link.Attrs().Index, IP: n.ip.AsSlice(), HardwareAddr: n.mac, State: netlink.NUD_PERMANENT}
		if err := inside.NeighAdd(neigh); err != nil {
			return fmt.Errorf("add permanent neighbour %s lladdr %s dev %s: %w", n.ip, n.mac, n.link.Attrs().Name, err)
		}
	}
	for _, a := range []struct {
		link netlink.Link
		ip   netip.Addr
	}{
		{peer, s.RealIP},
		{real, s.VisibleGateway},
	} {
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.ip.AsSlice(), Mask: net.CIDRMask(32, 32)}}
		if err := inside.AddrAdd(a.link, addr); err != nil {
			return fmt.Errorf("add address %s/32 dev %s: %w", a.ip, a.link.Attrs().Name, err)
		}
	}
	for _, l := range []netlink.Link{peer, real} {
		if err := inside.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	return nil
}

// Teardown removes the namespace of vif and everything in it: the veth
// pair goes (and with it the outer <vif>, its routes, neighbours and
// addresses), the real vif returns to the calling namespace under its name,
// down and unconfigured. A namespace that does not exist is not an error.
func Teardown(vif string) error {
	if err := checkVif(vif); err != nil {
		return err
	}
	caller, err := netns.Get()
	if err != nil {
		return fmt.Errorf("NAT mode for %s: open the calling thread's network namespace: %w", vif, err)
	}
	defer caller.Close()
	if err := dismantle(caller, vif); err != nil {
		return fmt.Errorf("NAT mode for %s: %w", vif, err)
	}
	return nil
}

// dismantle undoes whatever part of build exists. The real vif is brought
// back before the namespace is deleted because a dying namespace deletes
// virtual devices and hands physical ones to the initial namespace, possibly
// renamed, never to the caller's. If it can't be brought back, the namespace
// is kept so that nothing is lost.
func dismantle(caller netns.NsHandle, vif string) error {
	name := NamespaceName(vif)
	nat, err := netns.GetFromPath(namespacePath(name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", name, err)
	}
	defer nat.Close()
	// A file that is not a namespace (a run that died between creating the
	// file and binding the namespace onto it) holds nothing to bring back.
	if isNamespace(nat) {
		if err := bringBack(caller, nat, vif); err != nil {
			return err
		}
	}
	return removeNamed(name)
}

// bringBack deletes the veth pair and moves the real vif to the caller.
func bringBack(caller, nat netns.NsHandle, vif string) error {
	inside, err := netlink.NewHandleAt(nat, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in namespace %s: %w", NamespaceName(vif), err)
	}
	defer inside.Close()

	peer, err := inside.LinkByName(peerName(vif))
	switch {
	case err == nil:
		if err := inside.LinkDel(peer); err != nil {
			return fmt.Errorf("delete veth %s in namespace %s: %w", peerName(vif), NamespaceName(vif), err)
		}
	case !isLinkNotFound(err):
		return fmt.Errorf("find %s in namespace %s: %w", peerName(vif), NamespaceName(vif), err)
	}

	real, err := inside.LinkByName(vif)
	if isLinkNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find %s in namespace %s: %w", vif, NamespaceName(vif), err)
	}
	if err := inside.LinkSetNsFd(real, int(caller)); err != nil {
		return fmt.Errorf("move %s out of namespace %s: %w", vif, NamespaceName(vif), err)
	}
	return nil
}

func isLinkNotFound(err error) bool {
	var notFound netlink.LinkNotFoundError
	return errors.As(err, &notFound)
}

func namespacePath(name string) string { return filepath.Join(netnsDir, name) }
