// Package sandbox builds a Qubes-like network out of network namespaces and
// veth pairs: a network qube, its upstream (internet and DNS resolvers) and
// client qubes, for kernel tests, the demo and benchmarks.
//
// It drives the ip, nft and dnsmasq tools, which the shipped binaries never
// do: the sandbox is only the stage they are tested on.
package sandbox

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// BaseRuleset is the nftables ruleset of a network qube before any client
// connects: tables ip and ip6 qubes, which the hotplug and DNS tools extend.
//
//go:embed baseruleset.nft
var BaseRuleset string

// Addresses of the fixed part of the topology.
const (
	UplinkAddr    = "198.51.100.2" // the network qube on its uplink eth0
	UplinkAddr6   = "2001:db8:100::2"
	UpstreamAddr  = "198.51.100.1" // the upstream router, default gateway of the network qube
	UpstreamAddr6 = "2001:db8:100::1"
	InternetHost  = "203.0.113.1" // a host beyond the upstream router
	InternetHost6 = "2001:db8:203::1"
	Resolver1     = "198.51.100.53" // where StartResolver is expected to run a DNS server
	Resolver2     = "198.51.100.54"
	// Resolver6a and Resolver6b are where StartResolver is expected to run
	// IPv6 DNS servers: beyond the upstream router, reached through the
	// network qube's IPv6 default route.
	Resolver6a = "2001:db8:53::1"
	Resolver6b = "2001:db8:53::2"
	// DefaultGateway is the client's gateway when ClientSpec.Gateway is empty.
	DefaultGateway = "10.138.0.1"
)

// Options change how New builds the network qube.
type Options struct {
	// NoBaseRuleset leaves the network qube without nftables rules.
	NoBaseRuleset bool
	// Keep names the sandbox for outliving its process (make demo KEEP=1):
	// RemoveLeftovers spares it, RemoveKept removes it.
	Keep bool
}

// Sandbox is one set of namespaces; its ID prefixes every namespace name.
type Sandbox struct {
	ID       string
	NetVM    *NS // the network qube: uplink eth0, vifs to clients
	Upstream *NS // router, internet host and DNS resolvers

	dir string // temporary files (resolver logs and pid files)

	mu        sync.Mutex
	resolvers map[string]*resolver
	closed    bool
}

var sandboxCount atomic.Uint64

// New builds the network qube and upstream namespaces, wired by a veth pair.
// On failure it removes whatever it had created.
func New(opts Options) (s *Sandbox, err error) {
	prefix := namePrefix
	if opts.Keep {
		prefix = keptPrefix
	}
	id := fmt.Sprintf("%s%dx%d", prefix, os.Getpid(), sandboxCount.Add(1))
	s = &Sandbox{
		ID:        id,
		NetVM:     &NS{Name: id + "-netvm"},
		Upstream:  &NS{Name: id + "-up"},
		resolvers: map[string]*resolver{},
	}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("build sandbox %s: %w", id, err), s.Close())
			s = nil
		}
	}()

	if s.dir, err = os.MkdirTemp("", id+"-"); err != nil {
		return s, fmt.Errorf("create temporary directory: %w", err)
	}
	if _, err := run(strings.NewReader("netns add "+s.NetVM.Name+"\nnetns add "+s.Upstream.Name+"\n"), "ip", "-batch", "-"); err != nil {
		return s, err
	}
	if err := s.NetVM.IPBatch("link add eth0 type veth peer name up0 netns " + s.Upstream.Name); err != nil {
		return s, err
	}
	// Without duplicate address detection the uplink's link-local address
	// is final at once, so kernel-state captures taken right after New do
	// not change by themselves a second later.
	if err := s.NetVM.SetSysctl("net/ipv6/conf/eth0/accept_dad", "0"); err != nil {
		return s, err
	}
	if err := s.NetVM.IPBatch(
		"link set lo up",
		"link set eth0 group "+strconv.Itoa(netvm.UplinkGroup),
		"addr add "+UplinkAddr+"/24 dev eth0",
		"addr add "+UplinkAddr6+"/64 dev eth0 nodad",
		"link set eth0 up",
		"route add default via "+UpstreamAddr,
		"route add default via "+UpstreamAddr6,
	); err != nil {
		return s, err
	}
	if err := s.Upstream.IPBatch(
		"link set lo up",
		"addr add "+InternetHost+"/32 dev lo",
		"addr add "+InternetHost6+"/128 dev lo",
		"addr add "+Resolver1+"/32 dev lo",
		"addr add "+Resolver2+"/32 dev lo",
		"addr add "+UpstreamAddr+"/24 dev up0",
		"addr add "+UpstreamAddr6+"/64 dev up0 nodad",
		"link set up0 up",
	); err != nil {
		return s, err
	}
	if err := s.NetVM.SetSysctl("net/ipv4/ip_forward", "1"); err != nil {
		return s, err
	}
	if err := s.NetVM.SetSysctl("net/ipv6/conf/all/forwarding", "1"); err != nil {
		return s, err
	}
	if !opts.NoBaseRuleset {
		if err := s.NetVM.LoadNft(BaseRuleset); err != nil {
			return s, fmt.Errorf("load base ruleset: %w", err)
		}
	}
	return s, nil
}

// Close stops the resolvers, kills every process left in the sandbox's
// namespaces, deletes the namespaces (with the NAT-mode namespace of each
// client's vif, if vif-route-qubes left one) and the temporary files.
// Calling it again does nothing.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	resolvers := s.resolvers
	s.resolvers = nil
	s.mu.Unlock()

	var errs []error
	for _, r := range resolvers {
		r.stop()
	}
	names, err := NamespaceNames()
	errs = append(errs, err)
	for _, name := range names {
		if strings.HasPrefix(name, s.ID+"-") {
			errs = append(errs, deleteOwnNamespace(name))
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("remove %s: %w", s.dir, err))
		}
	}
	return errors.Join(errs...)
}
