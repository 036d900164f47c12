// systemd-resolved over D-Bus: which DNS servers it uses, and when that
// list may have changed.

package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/godbus/dbus/v5"
)

// The names under which systemd-resolved publishes its manager object.
const (
	ResolvedBusName    = "org.freedesktop.resolve1"
	ResolvedObjectPath = dbus.ObjectPath("/org/freedesktop/resolve1")
	ResolvedManager    = "org.freedesktop.resolve1.Manager"
)

// The address families as resolved reports them in the DNS property.
const (
	familyIPv4 = 2  // AF_INET
	familyIPv6 = 10 // AF_INET6
)

// ErrResolvedUnavailable means resolved cannot say which servers it uses: it is not
// running, or it returned no value. Callers fall back to resolv.conf, as
// upstream's qubes-setup-dnat-to-ns does.
var ErrResolvedUnavailable = errors.New("systemd-resolved unavailable")

// ResolvedServer is one entry of the Manager's DNS property, D-Bus type (iiay).
type ResolvedServer struct {
	Ifindex int32 // 0 for a global server, else the link it is configured on
	Family  int32 // AF_INET (2) or AF_INET6 (10)
	Address []byte
}

// ResolvedDNS reads the Manager's DNS property. The error wraps ErrResolvedUnavailable when
// resolved is not on the bus (the bus answers ServiceUnknown or
// NameHasNoOwner, or systemd fails to activate it) or when the reply
// carries no value, which dbus-python returns as None and upstream treats as
// "use resolv.conf". Any other failure, a call that outlives ctx included,
// is an error: a resolved that is present but silent must not make the
// caller rewrite the rules from a resolv.conf that points at resolved itself.
func ResolvedDNS(ctx context.Context, conn *dbus.Conn) ([]ResolvedServer, error) {
	call := conn.Object(ResolvedBusName, ResolvedObjectPath).
		CallWithContext(ctx, "org.freedesktop.DBus.Properties.Get", 0, ResolvedManager, "DNS")
	if call.Err != nil {
		if name := errorName(call.Err); isAbsence(name) {
			return nil, fmt.Errorf("get %s.DNS: %s: %w", ResolvedManager, name, ErrResolvedUnavailable)
		}
		return nil, fmt.Errorf("get %s.DNS: %w", ResolvedManager, call.Err)
	}
	if len(call.Body) == 0 {
		return nil, fmt.Errorf("get %s.DNS: empty reply: %w", ResolvedManager, ErrResolvedUnavailable)
	}
	var servers []ResolvedServer
	if err := dbus.Store(call.Body, &servers); err != nil {
		return nil, fmt.Errorf("get %s.DNS: decode %v: %w", ResolvedManager, call.Body, err)
	}
	return servers, nil
}

// ResolvedIPv4 picks the servers to use from resolved's list, in order: IPv4 ones
// only, and of those only the global ones (ifindex 0) if there is any. An
// IPv4 entry whose address is not 4 bytes long is skipped (upstream would
// crash on it).
func ResolvedIPv4(servers []ResolvedServer) []netip.Addr {
	addrs, _ := pick(servers, familyIPv4)
	return addrs
}

// ResolvedIPv6 picks the IPv6 servers by ResolvedIPv4's rule. A link-local
// server cannot be a DNAT target (its address means nothing without its
// link): it is left out and returned in linkLocal, with the ifindex as its
// zone, for the caller to log.
func ResolvedIPv6(servers []ResolvedServer) (addrs, linkLocal []netip.Addr) {
	return pick(servers, familyIPv6)
}

func pick(servers []ResolvedServer, family int32) (addrs, linkLocal []netip.Addr) {
	var global, all []netip.Addr
	for _, s := range servers {
		addr, ok := netip.AddrFromSlice(s.Address)
		if s.Family != family || !ok || (family == familyIPv4) != addr.Is4() || addr.Is4In6() {
			continue
		}
		if addr.IsLinkLocalUnicast() && family == familyIPv6 {
			linkLocal = append(linkLocal, addr.WithZone(strconv.Itoa(int(s.Ifindex))))
			continue
		}
		all = append(all, addr)
		if s.Ifindex == 0 {
			global = append(global, addr)
		}
	}
	if len(global) > 0 {
		return global, linkLocal
	}
	return all, linkLocal
}

// WatchResolved subscribes conn to the signals that mean resolved's DNS list may
// have changed, a PropertiesChanged naming DNS or resolved starting or
// stopping, and calls changed for each. It also calls changed once as soon
// as the subscription is in place, because a change just before it went
// unseen. It returns when ctx ends or the connection closes, so a caller
// can reconnect.
func WatchResolved(ctx context.Context, conn *dbus.Conn, changed func()) error {
	signals := make(chan *dbus.Signal, 16)
	conn.Signal(signals)
	defer conn.RemoveSignal(signals)
	matches := [][]dbus.MatchOption{
		{
			dbus.WithMatchSender(ResolvedBusName),
			dbus.WithMatchObjectPath(ResolvedObjectPath),
			dbus.WithMatchInterface("org.freedesktop.DBus.Properties"),
			dbus.WithMatchMember("PropertiesChanged"),
			dbus.WithMatchArg(0, ResolvedManager),
		},
		{
			dbus.WithMatchSender("org.freedesktop.DBus"),
			dbus.WithMatchInterface("org.freedesktop.DBus"),
			dbus.WithMatchMember("NameOwnerChanged"),
			dbus.WithMatchArg(0, ResolvedBusName),
		},
	}
	for _, m := range matches {
		if err := conn.AddMatchSignalContext(ctx, m...); err != nil {
			return fmt.Errorf("subscribe to %s signals: %w", ResolvedBusName, err)
		}
	}
	changed()
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig, ok := <-signals:
			if !ok {
				return errors.New("system bus connection closed")
			}
			if MeansResolvedChange(sig) {
				changed()
			}
		}
	}
}

// MeansResolvedChange reports whether sig says resolved's DNS list may differ from
// the last one read.
func MeansResolvedChange(sig *dbus.Signal) bool {
	switch sig.Name {
	case "org.freedesktop.DBus.NameOwnerChanged":
		var name string
		return dbus.Store(sig.Body[:min(1, len(sig.Body))], &name) == nil && name == ResolvedBusName
	case "org.freedesktop.DBus.Properties.PropertiesChanged":
		var iface string
		var props map[string]dbus.Variant
		var invalidated []string
		if sig.Path != ResolvedObjectPath || dbus.Store(sig.Body, &iface, &props, &invalidated) != nil || iface != ResolvedManager {
			return false
		}
		_, inChanged := props["DNS"]
		for _, name := range invalidated {
			if name == "DNS" {
				return true
			}
		}
		return inChanged
	}
	return false
}

// errorName returns the D-Bus error name carried by err, if any.
func errorName(err error) string {
	var value dbus.Error
	if errors.As(err, &value) {
		return value.Name
	}
	var ptr *dbus.Error
	if errors.As(err, &ptr) && ptr != nil {
		return ptr.Name
	}
	return ""
}

// isAbsence reports whether a D-Bus error name means that resolved is not
// there to ask, the cases upstream falls back on.
func isAbsence(name string) bool {
	switch name {
	case "org.freedesktop.DBus.Error.ServiceUnknown",
		"org.freedesktop.DBus.Error.NameHasNoOwner",
		"org.freedesktop.DBus.Error.NoSuchUnit":
		return true
	}
	return strings.HasPrefix(name, "org.freedesktop.systemd1.")
}
