package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/ifname"
	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/xenstore"
)

// Store reads one value by path; both the XenStore and the QubesDB clients
// satisfy it.
type Store interface {
	Read(path string) ([]byte, error)
}

// Sources are where a hotplug run reads its inputs. QubesDB is opened only
// when needed: a vif without addresses never touches it.
type Sources struct {
	XenStore Store
	QubesDB  func() (Store, error)
}

// Inputs is everything a run decides from; Plan turns it into steps.
type Inputs struct {
	Action   Action
	Vif      string // the name Xen gave the device
	Name     string // the name every step uses: vifname when set, else Vif
	Domid    int
	Metric   int
	Addrs    []netip.Addr
	MAC      net.HardwareAddr
	VifType  string
	Gateway  netip.Addr // back IPv4 on the vif
	Gateway6 netip.Addr // back IPv6 on the vif; invalid when unset or link-local
	Harden   bool
	// Mapped is set when dom0 gives the client a visible address other
	// than its real one (NAT mode).
	Mapped *Mapping
}

// Mapping is NAT mode's pair of addresses the client sees.
type Mapping struct {
	VisibleIP      netip.Addr
	VisibleGateway netip.Addr
}

var macPattern = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){5}$`)

// Gather reads and checks every input of a hotplug run. It changes nothing.
func Gather(inv Invocation, src Sources, log *slog.Logger) (*Inputs, error) {
	domid, err := VifDomid(inv.Vif)
	if err != nil {
		return nil, err
	}
	in := &Inputs{Action: inv.Action, Vif: inv.Vif, Name: inv.Vif, Domid: domid, Metric: Metric(domid)}
	base := strings.TrimSuffix(inv.XenbusPath, "/")
	xs := func(key string) (string, bool, error) {
		v, err := src.XenStore.Read(base + "/" + key)
		if errors.Is(err, xenstore.ErrNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("read XenStore %s/%s: %w", base, key, err)
		}
		return string(v), true, nil
	}

	vifname, _, err := xs("vifname")
	if err != nil {
		return nil, err
	}
	if vifname != "" {
		if err := ifname.Check(vifname); err != nil {
			return nil, fmt.Errorf("XenStore %s/vifname: %w", base, err)
		}
		in.Name = vifname
	}

	ipList, found, err := xs("ip")
	if err != nil {
		return nil, err
	}
	if !found {
		ipList = inv.IP
	}
	if in.Addrs, err = parseAddrs(ipList); err != nil {
		return nil, fmt.Errorf("XenStore %s/ip: %w", base, err)
	}

	vifType, found, err := xs("type")
	if err != nil {
		return nil, err
	}
	if !found {
		log.Debug("no vif type in XenStore; hooks get an empty type", "path", base+"/type")
	}
	in.VifType = vifType

	if len(in.Addrs) == 0 {
		if inv.Action == Online {
			// Hardening applies whatever the addresses, as upstream reads
			// the service flag whatever XenStore's ip holds.
			db, err := src.QubesDB()
			if err != nil {
				return nil, err
			}
			if in.Harden, err = hardenFlag(db); err != nil {
				return nil, err
			}
		}
		return in, nil
	}
	if inv.Action == Online {
		mac, _, err := xs("mac")
		if err != nil {
			return nil, err
		}
		if !macPattern.MatchString(mac) {
			return nil, fmt.Errorf("bad MAC address %q in XenStore %s/mac: want lowercase xx:xx:xx:xx:xx:xx", mac, base)
		}
		in.MAC, _ = net.ParseMAC(mac)
	}

	db, err := src.QubesDB()
	if err == nil {
		err = in.readQubesDB(db, log)
	}
	if err != nil && inv.Action == Offline {
		// At shutdown QubesDB may be gone or hung. What XenStore's ip
		// names (set elements, routes, neighbours, conntrack) needs no
		// QubesDB; the back addresses are those online put on the device.
		log.Warn("offline without QubesDB: back addresses taken from the device", "err", err)
		err = in.backAddrsFromDevice()
	}
	if err != nil {
		return nil, err
	}
	return in, nil
}

// backAddrsFromDevice fills in the back addresses QubesDB did not give from
// the device itself: online gives the vif no address but the back IPv4 as
// /32 and the back IPv6 as /128, so its global host addresses are those. A
// device that is gone has none.
func (in *Inputs) backAddrsFromDevice() error {
	link, err := netlink.LinkByName(in.Name)
	if errors.As(err, new(netlink.LinkNotFoundError)) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s for its back addresses: %w", in.Name, err)
	}
	addrs, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list the addresses of %s: %w", in.Name, err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, bits := a.Mask.Size()
		if !ok || a.Scope != unix.RT_SCOPE_UNIVERSE || ones != bits {
			continue
		}
		switch ip = ip.Unmap(); {
		case ip.Is4() && !in.Gateway.IsValid():
			in.Gateway = ip
		case ip.Is6() && !in.Gateway6.IsValid():
			in.Gateway6 = ip
		}
	}
	return nil
}

// hardenFlag reads QubesDB's harden-network-interfaces service flag.
func hardenFlag(db Store) (bool, error) {
	v, err := db.Read("/qubes-service/harden-network-interfaces")
	if errors.Is(err, qubesdb.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("QubesDB /qubes-service/harden-network-interfaces: %w", err)
	}
	return len(v) > 0, nil
}

func (in *Inputs) readQubesDB(db Store, log *slog.Logger) error {
	read := func(path string) (string, bool, error) {
		v, err := db.Read(path)
		if errors.Is(err, qubesdb.ErrNotFound) {
			return "", false, nil
		}
		if err != nil {
			return "", false, fmt.Errorf("read QubesDB %s: %w", path, err)
		}
		return string(v), true, nil
	}
	gw, found, err := read("/qubes-netvm-gateway")
	if err != nil {
		return err
	}
	if !found {
		return errors.New("QubesDB /qubes-netvm-gateway is not set: this qube does not provide network")
	}
	if in.Gateway, err = parseIPv4(gw); err != nil {
		return fmt.Errorf("QubesDB /qubes-netvm-gateway: %w", err)
	}
	gw6, _, err := read("/qubes-netvm-gateway6")
	if err != nil {
		return err
	}
	if gw6 != "" {
		a, err := netip.ParseAddr(gw6)
		if err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" {
			return fmt.Errorf("QubesDB /qubes-netvm-gateway6: bad IPv6 address %q", gw6)
		}
		// A link-local gateway needs no address: the vif has one already.
		if !strings.HasPrefix(gw6, "fe80:") {
			in.Gateway6 = a
		}
	}
	if in.Action == Online {
		if in.Harden, err = hardenFlag(db); err != nil {
			return err
		}
	}
	if ip4, ok := in.firstIPv4(); ok {
		prefix := "/mapped-ip/" + ip4.String()
		visible, _, err := read(prefix + "/visible-ip")
		if err != nil {
			return err
		}
		visibleGW, _, err := read(prefix + "/visible-gateway")
		if err != nil {
			return err
		}
		if visible != "" && visibleGW != "" && visible != ip4.String() {

			m := &Mapping{}
			if m.VisibleIP, err = parseIPv4(visible); err != nil {
				return fmt.Errorf("QubesDB %s/visible-ip: %w", prefix, err)
			}
			if m.VisibleGateway, err = parseIPv4(visibleGW); err != nil {
				return fmt.Errorf("QubesDB %s/visible-gateway: %w", prefix, err)
			}
			in.Mapped = m
			if in.Action == Online {
				if err := in.natSpec().Validate(); err != nil {
					return err
				}
			}
			for _, a := range in.Addrs {
				if a.Is6() {
					log.Warn("NAT mode does not support IPv6: address skipped", "addr", a)
				}
			}
		}
	}
	return nil
}

func (in *Inputs) firstIPv4() (netip.Addr, bool) {
	for _, a := range in.Addrs {
		if a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

func parseIPv4(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, fmt.Errorf("bad IPv4 address %q", s)
	}
	return a, nil
}

// parseAddrs splits XenStore's space-separated address list. Every entry
// must be a plain IPv4 or IPv6 address; a repeated one is kept once.
func parseAddrs(list string) ([]netip.Addr, error) {
	var addrs []netip.Addr
	for _, f := range strings.Fields(list) {
		a, err := netip.ParseAddr(f)
		if err != nil || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
			return nil, fmt.Errorf("bad address %q in %q", f, list)
		}
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	return addrs, nil
}
