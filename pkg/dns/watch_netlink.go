package dns

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// watchNetlink pokes on every address or route change outside client
// vifs: the uplink getting or losing an address or a route is when
// resolved's list changes without a resolv.conf rewrite and, on systemd
// versions that do not emit PropertiesChanged for DNS, without a signal.
// It pokes once after each subscription, since events before it went
// unseen, and renews a lost subscription (netlink overflow).
func watchNetlink(ctx context.Context, ns *netns.NsHandle, log *slog.Logger, poke func(string)) {
	backoff := time.Second
	for ctx.Err() == nil {
		err := subscribeNetlink(ctx, ns, log, poke)
		if ctx.Err() != nil {
			return
		}
		log.Warn("netlink subscription lost, renewing", "error", err, "in", backoff)
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// subscribeNetlink forwards address and route events until ctx ends or a
// subscription fails.
func subscribeNetlink(ctx context.Context, ns *netns.NsHandle, log *slog.Logger, poke func(string)) error {
	var handle *netlink.Handle
	var err error
	if ns != nil {
		handle, err = netlink.NewHandleAt(*ns, unix.NETLINK_ROUTE)
	} else {
		handle, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return err
	}
	defer handle.Close()
	done := make(chan struct{})
	defer close(done)
	failed := make(chan error, 2)
	onError := func(err error) {
		select {
		case failed <- err:
		default:
		}
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: ns, ErrorCallback: onError}); err != nil {
		return err
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: onError}); err != nil {
		return err
	}
	poke("netlink subscribed")
	// Client vifs' addresses and routes come and go with client qubes and
	// say nothing about the uplink. A link is looked up once per event; one
	// that cannot be found (already gone) is not assumed to be a client's.
	isClient := func(index int) bool {
		link, err := handle.LinkByIndex(index)
		return err == nil && link.Attrs().Group == netvm.ClientGroup
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-failed:
			return err
		case u, ok := <-addrs:
			if !ok {
				return lost(failed)
			}
			if !isClient(u.LinkIndex) {
				log.Debug("address changed", "address", u.LinkAddress.String(), "link", u.LinkIndex, "added", u.NewAddr)
				poke("address changed")
			}
		case u, ok := <-routes:
			if !ok {
				return lost(failed)
			}
			if !isClient(u.LinkIndex) {
				log.Debug("route changed", "route", u.Route.String(), "type", u.Type)
				poke("route changed")
			}
		}
	}
}

// lost returns why a subscription channel closed.
func lost(failed <-chan error) error {
	select {
	case err := <-failed:
		return err
	default:
		return errors.New("netlink subscription closed")
	}
}
