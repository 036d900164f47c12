package vif

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/internal/sysctl"
)

// Kernel holds the handles a run changes the kernel through, all bound to
// the network namespace of the thread that created them.
type Kernel struct {
	ctx  context.Context
	log  *slog.Logger
	opts Options
	nl   *netlink.Handle
	nf   *nfnl.Conn // opened on first use, shared by the run's netfilter requests

	// kernelConfig is where the kernel's flowtable support is read.
	kernelConfig KernelConfig

	// inside, when set (by tests), is called between the kernel operations
	// of a step and may fail it there: a step must then undo its own part.
	inside func(op string) error

	facts Facts
}

// NewKernel opens the routing netlink handle in the current network
// namespace.
func NewKernel(ctx context.Context, log *slog.Logger, opts Options) (*Kernel, error) {
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	return &Kernel{ctx: ctx, log: log, opts: opts, nl: h, kernelConfig: RunningKernelConfig()}, nil
}

// Close releases the netlink handles.
func (k *Kernel) Close() {
	k.nl.Close()
	if k.nf != nil {
		k.nf.Close()
	}
}

// netfilter returns the run's nfnetlink socket, opening it on first use
// (in the namespace of the calling thread, the run's).
func (k *Kernel) netfilter() (*nfnl.Conn, error) {
	if k.nf == nil {
		c, err := nfnl.Dial(0)
		if err != nil {
			return nil, err
		}
		k.nf = c
	}
	return k.nf, nil
}

// nft returns a fresh nftables connection: google/nftables v0.3.0 keeps a
// Conn unusable after one failed batch, so each batch gets its own.
func (k *Kernel) nft() (*nftables.Conn, error) {
	c, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return c, nil
}

// checkpoint marks the point after a step's first kernel operation and
// before its next one.
func (k *Kernel) checkpoint(op string) error {
	if k.inside == nil {
		return nil
	}
	return k.inside(op)
}

func (k *Kernel) index() int { return k.facts.Link.Attrs().Index }

func (k *Kernel) linkByName(name string) (netlink.Link, bool, error) {
	l, err := k.nl.LinkByName(name)
	if err == nil {
		return l, true, nil
	}
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
		return nil, false, nil
	}
	return nil, false, fmt.Errorf("look up device %s: %w", name, err)
}

// waitForLink returns the device once it exists, waiting up to timeout for
// the toolstack to create it (it can run the hotplug before the backend
// device registers).
func (k *Kernel) waitForLink(name string, timeout time.Duration) (netlink.Link, error) {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	// Subscribe before looking, so a device created in between is not missed.
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{}); err != nil {
		return nil, fmt.Errorf("watch for device %s: %w", name, err)
	}
	if l, ok, err := k.linkByName(name); err != nil || ok {
		return l, err
	}
	k.log.Info("device not there yet, waiting", "device", name, "timeout", timeout)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case u, ok := <-updates:
			if !ok {
				return nil, fmt.Errorf("watch for device %s: subscription closed", name)
			}
			if u.Header.Type == unix.RTM_NEWLINK && u.Attrs().Name == name {
				return k.nl.LinkByIndex(u.Attrs().Index)
			}
		case <-timer.C:
			return nil, fmt.Errorf("device %s did not appear within %s", name, timeout)
		case <-k.ctx.Done():
			return nil, fmt.Errorf("waiting for device %s: %w", name, k.ctx.Err())
		}
	}
}

// setSysctl writes key=value and returns how to restore the old value (nil
// when it already had that value).
func setSysctl(key, value string) (func() error, error) {
	old, err := sysctl.Read(key)
	if err != nil {
		return nil, err
	}
	if old == value {
		return nil, nil
	}
	if err := sysctl.Write(key, value); err != nil {
		return nil, err
	}
	return func() error { return sysctl.Write(key, old) }, nil
}

func hostPrefix(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

func family(a netip.Addr) int {
	if a.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// hostRoute is `ip route add <addr> dev <vif> metric <m>`: iproute2 gives an
// IPv4 route without gateway scope link and every route protocol boot.
func (k *Kernel) hostRoute(a netip.Addr, metric int) *netlink.Route {
	r := &netlink.Route{LinkIndex: k.index(), Dst: hostPrefix(a), Priority: metric, Protocol: unix.RTPROT_BOOT}
	if a.Is4() {
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

// alreadyDone reports whether err is one of errnos, the answers that mean
// the change is already in place (EEXIST on an addition, ENOENT and the
// like on a removal): a step then treats it as done.
func alreadyDone(err error, errnos ...unix.Errno) bool {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
