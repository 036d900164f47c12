package vif

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/nftables"
	mnl "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/internal/sysctl"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

func planOnline(in *Inputs, opts Options) []Step {
	var steps []Step
	if in.Mapped != nil {
		in = in.withoutIPv6()
	}
	entries := in.entries()
	if len(entries) > 0 {
		steps = append(steps, checkRuleset(entries))
	}
	steps = append(steps,
		resolveLink(in, opts),
		sysctlStep("net/ipv4/conf/"+in.Name+"/proxy_arp", "1"),
		joinFlowtable(in.Name),
	)
	if in.Mapped != nil {
		steps = append(steps, natMode(in))
	}
	if in.Harden {
		steps = append(steps, harden(in.Name, opts))
	}
	if len(entries) > 0 {
		steps = append(steps, purgeConntrack(in.Addrs))
		for _, a := range in.Addrs {
			steps = append(steps, addNeighbour(in.Name, a, in.MAC))
		}
		steps = append(steps, addElements(entries))
	}
	steps = append(steps, linkUp(in.Name))
	for _, a := range in.Addrs {
		steps = append(steps, addRoute(in.Name, a, in.Metric), runHooks(opts, "online", in, a))
	}
	if len(in.Addrs) == 0 {
		steps = append(steps, runHooks(opts, "online", in, netip.Addr{}))
		return steps
	}
	steps = append(steps, addAddress(in.Name, in.Gateway))
	if in.Gateway6.IsValid() {
		steps = append(steps, addAddress(in.Name, in.Gateway6),
			ifIPv6(sysctlStep("net/ipv6/conf/"+in.Name+"/proxy_ndp", "1"), nil))
	}
	return steps
}

func planOffline(in *Inputs, opts Options) []Step {
	if in.Mapped != nil {
		in = in.withoutIPv6()
	}
	entries := in.entries()
	steps := []Step{removeElements(in.Name, entries)}
	if len(entries) > 0 {
		steps = append(steps, purgeConntrack(in.Addrs))
	}
	steps = append(steps, findLink(in.Name))
	for _, a := range in.Addrs {
		steps = append(steps, delNeighbour(in.Name, a))
	}
	for _, a := range in.Addrs {
		steps = append(steps, delRoute(in.Name, a, in.Metric), runHooks(opts, "offline", in, a))
	}
	if len(in.Addrs) == 0 {
		steps = append(steps, runHooks(opts, "offline", in, netip.Addr{}))
	} else {
		for _, gw := range []netip.Addr{in.Gateway, in.Gateway6} {
			if gw.IsValid() {
				steps = append(steps, delAddress(in.Name, gw))
			}
		}
	}
	return append(steps, natTeardown(in.Name))
}

// withoutIPv6 is the inputs of NAT mode, which handles IPv4 only.
func (in *Inputs) withoutIPv6() *Inputs {
	v4 := *in
	v4.Addrs = nil
	for _, a := range in.Addrs {
		if a.Is4() {
			v4.Addrs = append(v4.Addrs, a)
		}
	}
	v4.Gateway6 = netip.Addr{}
	return &v4
}

func (in *Inputs) entries() []VifAddr {
	e := make([]VifAddr, len(in.Addrs))
	for i, a := range in.Addrs {
		e[i] = VifAddr{Vif: in.Name, Addr: a}
	}
	return e
}

func checkRuleset(entries []VifAddr) Step {
	return Step{
		Change: Change{Kind: CheckRuleset, Object: netvm.Table},
		Desc:   "check the base ruleset: sets allowed and downstream in table(s) qubes",
		Do: func(k *Kernel) (func() error, error) {
			c, err := k.nft()
			if err != nil {
				return nil, err
			}
			return nil, checkBaseRuleset(c, entries)
		},
	}
}

// resolveLink finds the device (waiting for it if the toolstack has not
// created it yet), renames it to vifname when XenStore asks, and learns
// whether IPv6 is enabled on it.
func resolveLink(in *Inputs, opts Options) Step {
	desc := "find device " + in.Vif
	if in.Name != in.Vif {
		desc = fmt.Sprintf("find device %s and rename it to %s (vifname)", in.Vif, in.Name)
	}
	change := Change{Kind: FindLink, Object: in.Vif}
	if in.Name != in.Vif {
		change = Change{Kind: RenameLink, Object: in.Vif, Value: in.Name}
	}
	return Step{Change: change, Desc: desc, Do: func(k *Kernel) (func() error, error) {
		var undo func() error
		if in.Name != in.Vif {
			renamed, found, err := k.linkByName(in.Name)
			if err != nil {
				return nil, err
			}
			orig, origFound, err := k.linkByName(in.Vif)
			if err != nil {
				return nil, err
			}
			switch {
			case found && origFound:
				return nil, fmt.Errorf("cannot rename %s to %s: that name is taken by another device", in.Vif, in.Name)
			case found:
				k.facts.Link = renamed // renamed by an earlier online
			default:
				if !origFound {
					if orig, err = k.waitForLink(in.Vif, opts.LinkWait); err != nil {
						return nil, err
					}
				}
				if err := k.nl.LinkSetName(orig, in.Name); err != nil {
					return nil, fmt.Errorf("rename %s to %s: %w", in.Vif, in.Name, err)
				}
				undo = func() error { return k.nl.LinkSetName(orig, in.Vif) }
				if err := k.checkpoint("after rename"); err != nil {
					return undo, err
				}
				if k.facts.Link, err = k.nl.LinkByIndex(orig.Attrs().Index); err != nil {
					return undo, fmt.Errorf("look up %s after rename: %w", in.Name, err)
				}
			}
		} else {
			l, err := k.waitForLink(in.Name, opts.LinkWait)
			if err != nil {
				return nil, err
			}
			k.facts.Link = l
		}
		disabled, err := sysctl.Read("net/ipv6/conf/" + in.Name + "/disable_ipv6")
		k.facts.IPv6 = err == nil && disabled == "0"
		return undo, nil
	}}
}

// findLink is offline's look-up: a device that is already gone needs no
// cleaning of its routes, neighbours or addresses (the kernel removed them).
func findLink(name string) Step {
	return Step{Change: Change{Kind: FindLink, Object: name}, Desc: "find device " + name + " (if it still exists)", Do: func(k *Kernel) (func() error, error) {
		l, _, err := k.linkByName(name)
		k.facts.Link = l
		return nil, err
	}}
}

func sysctlStep(key, value string) Step {
	return Step{
		Change: Change{Kind: SetSysctl, Object: key, Value: value},
		Desc:   fmt.Sprintf("sysctl %s = %s", key, value),
		Do:     func(*Kernel) (func() error, error) { return setSysctl(key, value) },
	}
}

// ifIPv6 makes a step conditional on IPv6 being enabled on the vif (a fact
// FindLink learns); onSkip, when not nil, is called instead of the step
// when it is not.
func ifIPv6(s Step, onSkip func(k *Kernel)) Step {
	do := s.Do
	s.Desc += " (if IPv6 is enabled on the vif)"
	s.Change.IfIPv6 = true
	s.Do = func(k *Kernel) (func() error, error) {
		if !k.facts.IPv6 {
			if onSkip != nil {
				onSkip(k)
			}
			return nil, nil
		}
		return do(k)
	}
	return s
}

// harden applies the sysctl.d hardening file to `all` and this vif, as
// upstream's systemd-sysctl --prefix invocation does. The file's globs are
// expanded now, when the device exists.
func harden(name string, opts Options) Step {
	return Step{
		Change: Change{Kind: Harden, Object: name, Value: opts.HardeningConf},
		Desc:   fmt.Sprintf("harden: apply %s to all and %s", opts.HardeningConf, name),
		Do: func(k *Kernel) (func() error, error) {
			settings, err := Hardening(opts.HardeningConf, opts.ProcSys, []string{"all", name})
			if err != nil {
				return nil, err
			}
			var undos undoStack
			for _, s := range settings {
				if len(undos) > 0 {
					if err := k.checkpoint("harden " + s.Key); err != nil {
						return undos.run, err
					}
				}
				undo, err := setSysctl(s.Key, s.Value)
				if err != nil && s.IgnoreFailure {
					k.log.Debug("harden: failure ignored, as the line's leading '-' asks", "key", s.Key, "value", s.Value, "err", err)
					continue
				}
				if sysctl.Skippable(err) {
					k.log.Info("harden: setting skipped, as systemd-sysctl skips it", "key", s.Key, "value", s.Value, "err", err)
					continue
				}
				if err != nil {
					return undos.run, fmt.Errorf("harden: %w", err)
				}
				undos.push(undo)
			}
			return undos.run, nil
		},
	}
}

// joinFlowtable puts the vif in the flow-offload table's flowtable
// (creating the table if absent). Offload is an optimisation: when the
// kernel cannot do it the run warns and goes on.
func joinFlowtable(name string) Step {
	return Step{
		Change: Change{Kind: JoinFlowtable, Object: name},
		Desc:   fmt.Sprintf("nft add flowtable inet %s %s { devices = { %s and every other interface not listed } } (table created if absent: offload group %d -> group %d)", OffloadTable, OffloadFlowtable, name, netvm.ClientGroup, netvm.UplinkGroup),
		Do: func(k *Kernel) (func() error, error) {
			undo, err := k.joinFlowtable(name)
			if err != nil {
				k.log.Warn("flow offload unavailable, traffic takes the normal path", "err", err)
				return nil, nil
			}
			return undo, nil
		},
	}
}

// purgeConntrack forgets connections tracked for the addresses, so flows
// of an earlier owner of an address do not leak to the new one. The
// kernel filters the dump (conntrack.go), so the cost follows the
// client's flows, not the table; a namespace that tracks no connection at
// all is not asked.
func purgeConntrack(addrs []netip.Addr) Step {
	return Step{
		Change: Change{Kind: PurgeConntrack, Object: fmt.Sprint(addrs)},
		Desc:   fmt.Sprintf("conntrack -D -s/-d for %v", addrs),
		Do: func(k *Kernel) (func() error, error) {
			if count, err := sysctl.Read("net/netfilter/nf_conntrack_count"); err == nil && count == "0" {
				return nil, nil
			}
			c, err := k.netfilter()
			if err != nil {
				return nil, err
			}
			n, err := PurgeConnections(c, addrs)
			k.log.Debug("conntrack purged", "entries", n)
			return nil, err
		},
	}
}

func addNeighbour(name string, a netip.Addr, mac net.HardwareAddr) Step {
	s := Step{
		Change: Change{Kind: AddNeighbour, Object: name, Addr: a, Value: mac.String()},
		Desc:   fmt.Sprintf("ip neighbour add %s dev %s lladdr %s nud permanent", a, name, mac),
		Do: func(k *Kernel) (func() error, error) {
			n := &netlink.Neigh{LinkIndex: k.index(), Family: family(a), State: netlink.NUD_PERMANENT, IP: a.AsSlice(), HardwareAddr: mac}
			err := k.nl.NeighAdd(n)
			if err == nil {
				return func() error { return k.nl.NeighDel(n) }, nil
			}
			if !alreadyDone(err, unix.EEXIST) {
				return nil, fmt.Errorf("add neighbour %s lladdr %s dev %s: %w", a, mac, name, err)
			}
			old, err := k.neighbour(a)
			if err != nil || old == nil {
				return nil, err
			}
			if bytes.Equal(old.HardwareAddr, mac) && old.State == netlink.NUD_PERMANENT {
				return nil, nil
			}
			if err := k.nl.NeighSet(n); err != nil {
				return nil, fmt.Errorf("replace neighbour %s dev %s: %w", a, name, err)
			}
			return func() error { return k.nl.NeighSet(old) }, nil
		},
	}
	if a.Is6() {
		return ifIPv6(s, nil)
	}
	return s
}

func (k *Kernel) neighbour(a netip.Addr) (*netlink.Neigh, error) {
	list, err := k.nl.NeighList(k.index(), family(a))
	if err != nil {
		return nil, fmt.Errorf("list neighbours of %s: %w", k.facts.Link.Attrs().Name, err)
	}
	for i := range list {
		if ip, ok := netip.AddrFromSlice(list[i].IP); ok && ip.Unmap() == a {
			return &list[i], nil
		}
	}
	return nil, nil
}

func delNeighbour(name string, a netip.Addr) Step {
	return Step{Change: Change{Kind: DelNeighbour, Object: name, Addr: a}, Desc: fmt.Sprintf("ip neighbour del %s dev %s (if present)", a, name), Do: func(k *Kernel) (func() error, error) {
		if k.facts.Link == nil {
			return nil, nil
		}
		err := k.nl.NeighDel(&netlink.Neigh{LinkIndex: k.index(), Family: family(a), IP: a.AsSlice()})
		if err != nil && !alreadyDone(err, unix.ENOENT, unix.ENODEV) {
			return nil, fmt.Errorf("delete neighbour %s dev %s: %w", a, name, err)
		}
		return nil, nil
	}}
}

func addElements(entries []VifAddr) Step {
	return Step{Change: Change{Kind: AddElements, Object: describeAddrs(entries)}, Desc: "nft add element: " + describeEntries(entries), Do: func(k *Kernel) (func() error, error) {
		missing, err := k.elementsWhere(entries, false)
		if err != nil || missing.empty() {
			return nil, err
		}
		msgs, err := elementChanges(queueAddElements, missing)
		if err != nil {
			return nil, err
		}
		if err := k.batch(msgs, missing); err != nil {
			return nil, err
		}
		return func() error {
			msgs, err := elementChanges(queueDeleteElements, missing)
			if err != nil {
				return err
			}
			return k.batch(msgs, missing)
		}, nil
	}}
}

// removeElements deletes the vif's elements that are present and takes
// the vif out of the flowtable, in one transaction: the kernel then waits
// for one RCU grace period, not one per deletion batch.
func removeElements(name string, entries []VifAddr) Step {
	desc := "nft delete flowtable device " + name + " (if listed)"
	if len(entries) > 0 {
		desc = "nft delete element (those present): " + describeEntries(entries) + "; and flowtable device " + name + " (if listed), one transaction"
	}
	return Step{Change: Change{Kind: RemoveElements, Object: name, Value: describeAddrs(entries)}, Desc: desc, Do: func(k *Kernel) (func() error, error) {
		present, err := k.elementsWhere(entries, true)
		if err != nil {
			return nil, err
		}
		msgs, err := elementChanges(queueDeleteElements, present)
		if err != nil {
			return nil, err
		}
		// Under the flowtable lock: an online reading the device list
		// meanwhile could add the vif back after this removal.
		unlock, err := lockFlowtable(k.opts.LockPath)
		if err != nil {
			return nil, err
		}
		defer unlock()
		ft, err := k.flowtableRemoval(name)
		if err != nil {
			k.log.Warn("cannot read the flowtable, leaving it as it is", "err", err)
		}
		if err := k.batch(append(msgs, ft...), present); err != nil {
			return nil, err
		}
		return nil, nil
	}}
}

// elementsWhere returns the entries whose `allowed` element, and those
// whose `downstream` element, are in the kernel (present) or not.
func (k *Kernel) elementsWhere(entries []VifAddr, present bool) (Elements, error) {
	var els Elements
	if len(entries) == 0 {
		return els, nil
	}
	c, err := k.netfilter()
	if err != nil {
		return els, err
	}
	for _, e := range entries {
		a, d, err := elementsPresent(c, e)
		if err != nil {
			return Elements{}, err
		}
		if a == present {
			els.Allowed = append(els.Allowed, e)
		}
		if d == present {
			els.Downstream = append(els.Downstream, e)
		}
	}
	return els, nil
}

// elementChanges encodes the changes queue makes to els.
func elementChanges(queue func(*nftables.Conn, Elements) error, els Elements) ([]mnl.Message, error) {
	if els.empty() {
		return nil, nil
	}
	return nfnl.Queued(func(c *nftables.Conn) error { return queue(c, els) })
}

// batch sends msgs as one transaction; els names the element changes
// among them for the error.
func (k *Kernel) batch(msgs []mnl.Message, els Elements) error {
	if len(msgs) == 0 {
		return nil
	}
	c, err := k.netfilter()
	if err != nil {
		return err
	}
	if err := c.Batch(msgs); err != nil {
		return fmt.Errorf("update anti-spoofing sets (allowed %s; downstream %s): %w", describeEntries(els.Allowed), describeAddrs(els.Downstream), err)
	}
	return nil
}

func describeEntries(entries []VifAddr) string {
	var b bytes.Buffer
	for i, e := range entries {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s qubes allowed { %s } downstream { %s }", e.Family(), e.AllowedElement(), e.Addr)
	}
	return b.String()
}

func describeAddrs(entries []VifAddr) string {
	addrs := make([]string, len(entries))
	for i, e := range entries {
		addrs[i] = e.Addr.String()
	}
	return fmt.Sprint(addrs)
}

func linkUp(name string) Step {
	group := fmt.Sprint("group ", netvm.ClientGroup)
	return Step{Change: Change{Kind: LinkUp, Object: name, Value: group}, Desc: fmt.Sprintf("ip link set dev %s %s up", name, group), Do: func(k *Kernel) (func() error, error) {
		attrs := k.facts.Link.Attrs()
		oldGroup, wasUp := int(attrs.Group), attrs.Flags&unix.IFF_UP != 0
		var undos undoStack
		if oldGroup != netvm.ClientGroup {
			if err := k.nl.LinkSetGroup(k.facts.Link, netvm.ClientGroup); err != nil {
				return nil, fmt.Errorf("set %s %s: %w", name, group, err)
			}
			undos.push(func() error { return k.nl.LinkSetGroup(k.facts.Link, oldGroup) })
		}
		if !wasUp {
			if err := k.checkpoint("before link up"); err != nil {
				return undos.run, err
			}
			if err := k.nl.LinkSetUp(k.facts.Link); err != nil {
				return undos.run, fmt.Errorf("set %s up: %w", name, err)
			}
			undos.push(func() error { return k.nl.LinkSetDown(k.facts.Link) })
		}
		return undos.run, nil
	}}
}

func addRoute(name string, a netip.Addr, metric int) Step {
	s := Step{Change: Change{Kind: AddRoute, Object: name, Addr: a, Value: fmt.Sprint(metric)}, Desc: fmt.Sprintf("ip route add %s dev %s metric %d", a, name, metric), Do: func(k *Kernel) (func() error, error) {
		r := k.hostRoute(a, metric)
		err := k.nl.RouteAdd(r)
		if alreadyDone(err, unix.EEXIST) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("add route %s dev %s metric %d: %w", a, name, metric, err)
		}
		return func() error { return k.nl.RouteDel(r) }, nil
	}}
	if a.Is6() {
		// Upstream logs an error and skips the route (and the hooks) for
		// an IPv6 address while IPv6 is disabled.
		return ifIPv6(s, func(k *Kernel) {
			k.log.Error("cannot add IPv6 route: IPv6 is disabled on the vif", "addr", a)
		})
	}
	return s
}

func delRoute(name string, a netip.Addr, metric int) Step {
	return Step{Change: Change{Kind: DelRoute, Object: name, Addr: a, Value: fmt.Sprint(metric)}, Desc: fmt.Sprintf("ip route del %s dev %s metric %d (if present)", a, name, metric), Do: func(k *Kernel) (func() error, error) {
		if k.facts.Link == nil {
			return nil, nil
		}
		err := k.nl.RouteDel(k.hostRoute(a, metric))
		if err != nil && !alreadyDone(err, unix.ESRCH, unix.ENOENT, unix.ENODEV) {
			return nil, fmt.Errorf("delete route %s dev %s metric %d: %w", a, name, metric, err)
		}
		return nil, nil
	}}
}

func backAddr(a netip.Addr) *netlink.Addr { return &netlink.Addr{IPNet: hostPrefix(a)} }

func addAddress(name string, a netip.Addr) Step {
	s := Step{Change: Change{Kind: AddAddress, Object: name, Addr: a}, Desc: fmt.Sprintf("ip addr add %s/%d dev %s", a, a.BitLen(), name), Do: func(k *Kernel) (func() error, error) {
		err := k.nl.AddrAdd(k.facts.Link, backAddr(a))
		if alreadyDone(err, unix.EEXIST) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("add address %s/%d dev %s: %w", a, a.BitLen(), name, err)
		}
		return func() error { return k.nl.AddrDel(k.facts.Link, backAddr(a)) }, nil
	}}
	if a.Is6() {
		return ifIPv6(s, nil)
	}
	return s
}

func delAddress(name string, a netip.Addr) Step {
	return Step{Change: Change{Kind: DelAddress, Object: name, Addr: a}, Desc: fmt.Sprintf("ip addr del %s/%d dev %s (if present)", a, a.BitLen(), name), Do: func(k *Kernel) (func() error, error) {
		if k.facts.Link == nil {
			return nil, nil
		}
		err := k.nl.AddrDel(k.facts.Link, backAddr(a))
		if err != nil && !alreadyDone(err, unix.EADDRNOTAVAIL, unix.ENODEV) {
			return nil, fmt.Errorf("delete address %s/%d dev %s: %w", a, a.BitLen(), name, err)
		}
		return nil, nil
	}}
}

// runHooks runs the user's network hooks for one address (or, with a zero
// address, once for a vif without addresses).
func runHooks(opts Options, command string, in *Inputs, a netip.Addr) Step {
	addr := ""
	if a.IsValid() {
		addr = a.String()
	}
	s := Step{
		Change: Change{Kind: RunHooks, Object: in.Name, Addr: a, Value: command},
		Desc:   fmt.Sprintf("run hooks in %s: %s %s %q %q", opts.HooksDir, command, in.Name, in.VifType, addr),
		Do: func(k *Kernel) (func() error, error) {
			runHookDir(k.ctx, k.log, opts.HooksDir, hookCall{Command: command, Vif: in.Name, VifType: in.VifType, Addr: addr})
			return nil, nil
		},
	}
	if command == "online" && a.Is6() {
		return ifIPv6(s, nil)
	}
	return s
}
