package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qubes-netvm/qnet/pkg/qubesdb"
)

// Defaults for Config, matching the paths upstream's script uses.
const (
	DefaultResolvConf   = "/etc/resolv.conf"
	DefaultFirewallFlag = "/run/qubes-service/qubes-firewall"
	DefaultBusTimeout   = 2 * time.Second
	// DefaultLockPath serialises runs; its directory is the watch
	// service's RuntimeDirectory (kept across restarts), and is created
	// by whichever run comes first.
	DefaultLockPath    = "/run/qubes-setup-dnat-to-ns/lock"
	DefaultLockTimeout = 30 * time.Second
	firewallUnit       = "qubes-firewall.service"
)

// The QubesDB entries naming the virtual DNS addresses, in priority order:
// IPv4 ones (upstream's), IPv6 ones (written by dom0 when it offers IPv6
// DNS).
var (
	virtualDNSPaths  = []string{"/qubes-netvm-primary-dns", "/qubes-netvm-secondary-dns"}
	virtualDNS6Paths = []string{"/qubes-netvm-primary-dns6", "/qubes-netvm-secondary-dns6"}
)

// Config says where a run finds its inputs and what it touches.
type Config struct {
	QubesDBSocket string        // QubesDB daemon socket
	ResolvConf    string        // read when resolved cannot be asked
	FirewallFlag  string        // if this file exists, qubes-firewall is reloaded on a change
	BusTimeout    time.Duration // bounds the bus connection and each D-Bus call
	// LockPath is the file whose lock Sync holds from reading its inputs
	// to replacing the chains, so that concurrent runs (dispatcher hook,
	// setup-ip, watch service) apply in turn, each from what it read
	// after the previous one finished. LockTimeout bounds the wait.
	LockPath    string
	LockTimeout time.Duration
	// RestartOnChange lists units to try-restart after the chain was
	// replaced (watch mode restarts qubes-updates-proxy.service, as the
	// dispatcher hook does after a run).
	RestartOnChange []string
	NFT             *NFT
	Logger          *slog.Logger
}

// DefaultConfig returns the configuration of the installed binary.
func DefaultConfig(logger *slog.Logger) Config {
	return Config{
		QubesDBSocket: qubesdb.SocketPath(),
		ResolvConf:    DefaultResolvConf,
		FirewallFlag:  DefaultFirewallFlag,
		BusTimeout:    DefaultBusTimeout,
		LockPath:      DefaultLockPath,
		LockTimeout:   DefaultLockTimeout,
		NFT:           NewNFT(0),
		Logger:        logger,
	}
}

// Inputs are what the rules are planned from.
type Inputs struct {
	Virtual  []netip.Addr // IPv4 virtual addresses, from QubesDB
	Virtual6 []netip.Addr // IPv6 virtual addresses, from QubesDB
	Real     []netip.Addr // IPv4 servers, from resolved or resolv.conf
	Real6    []netip.Addr // IPv6 servers, from the same source
	Source   string       // where Real and Real6 came from
}

// Result is the outcome of Sync.
type Result struct {
	Inputs
	Rules []Rule
	// Changed is false when the chain already held Rules; then nothing
	// was touched.
	Changed bool
}

// Sync makes the kernel's chains match the current DNS configuration. When
// the chains already hold the planned rules it changes nothing; otherwise
// it asks systemd to reload qubes-firewall (if that service is enabled),
// replaces the chains, and try-restarts cfg.RestartOnChange. It holds the
// lock at cfg.LockPath throughout and reads its inputs only once it holds
// it. Failures to reach systemd are logged, not returned, as upstream
// ignores them.
func Sync(ctx context.Context, cfg Config) (Result, error) {
	unlock, err := lock(ctx, cfg.LockPath, cfg.LockTimeout, cfg.Logger)
	if err != nil {
		return Result{}, err
	}
	defer unlock()
	bus := connectBus(ctx, cfg)
	if bus != nil {
		defer bus.Close()
	}
	res, err := preview(ctx, cfg, bus)
	if err != nil || !res.Changed {
		return res, err
	}
	if _, err := os.Stat(cfg.FirewallFlag); err == nil {
		queueJob(ctx, cfg, bus, ReloadOrTryRestartUnit, firewallUnit)
	}
	if err := cfg.NFT.Replace(res.Rules); err != nil {
		return res, err
	}
	for _, unit := range cfg.RestartOnChange {
		queueJob(ctx, cfg, bus, TryRestartUnit, unit)
	}
	return res, nil
}

// Preview works out what Sync would do, reading the inputs and the
// kernel's chain but changing nothing: Result.Changed says whether Sync
// would replace the chain.
func Preview(ctx context.Context, cfg Config) (Result, error) {
	bus := connectBus(ctx, cfg)
	if bus != nil {
		defer bus.Close()
	}
	return preview(ctx, cfg, bus)
}

func preview(ctx context.Context, cfg Config, bus *dbus.Conn) (Result, error) {
	in, err := discover(ctx, cfg, bus)
	if err != nil {
		return Result{}, err
	}
	res := Result{Inputs: in, Rules: PlanDual(in.Virtual, in.Virtual6, in.Real, in.Real6)}
	same, err := cfg.NFT.Matches(res.Rules)
	res.Changed = !same
	return res, err
}

// discover reads the virtual addresses from QubesDB and the real servers
// from resolved over bus, falling back to resolv.conf when bus is nil,
// resolved is not running or it answers without a value. A resolv.conf
// that cannot be read counts as naming no server (fail closed, as
// upstream): the rules then let no query out.
func discover(ctx context.Context, cfg Config, bus *dbus.Conn) (in Inputs, err error) {
	db, err := qubesdb.Dial(cfg.QubesDBSocket, cfg.BusTimeout)
	if err != nil {
		return Inputs{}, err
	}
	defer db.Close()
	if in.Virtual, err = readVirtual(cfg, db, virtualDNSPaths, ParseVirtual, "an IPv4"); err != nil {
		return Inputs{}, err
	}
	if in.Virtual6, err = readVirtual(cfg, db, virtualDNS6Paths, ParseVirtual6, "an IPv6"); err != nil {
		return Inputs{}, err
	}
	if bus != nil {
		callCtx, cancel := context.WithTimeout(ctx, cfg.BusTimeout)
		servers, err := ResolvedDNS(callCtx, bus)
		cancel()
		switch {
		case err == nil:
			var linkLocal []netip.Addr
			in.Real, in.Source = ResolvedIPv4(servers), "systemd-resolved"
			in.Real6, linkLocal = ResolvedIPv6(servers)
			logScoped(cfg, in, linkLocal)
			return in, nil
		case !errors.Is(err, ErrResolvedUnavailable):
			return Inputs{}, err
		}
		cfg.Logger.Debug("falling back to resolv.conf", "reason", err)
	}
	in.Source = cfg.ResolvConf
	servers, err := ReadResolvConf(cfg.ResolvConf)
	if err != nil {
		cfg.Logger.Warn("cannot read resolv.conf, treating it as naming no DNS server", "error", err)
	}
	in.Real, in.Real6 = servers.IPv4, servers.IPv6
	logScoped(cfg, in, servers.Scoped)
	return in, nil
}

// logScoped names the link-local IPv6 servers left out, which matters
// (info) only when there are IPv6 virtual addresses to point at them.
func logScoped(cfg Config, in Inputs, scoped []netip.Addr) {
	if len(scoped) == 0 {
		return
	}
	level := slog.LevelDebug
	if len(in.Virtual6) > 0 {
		level = slog.LevelInfo
	}
	cfg.Logger.Log(context.Background(), level, "skipping link-local IPv6 DNS servers: a DNAT target needs a routable address", "servers", scoped, "source", in.Source)
}

// connectBus returns a system bus connection, or nil when there is no
// usable bus: then DNS comes from resolv.conf (upstream crashes when the
// bus socket is missing and falls back when the bus does not answer).
func connectBus(ctx context.Context, cfg Config) *dbus.Conn {
	bus, err := ConnectSystemBus(ctx, cfg.BusTimeout)
	if err != nil {
		cfg.Logger.Debug("no system bus, DNS from resolv.conf only", "error", err)
		return nil
	}
	return bus
}

// readVirtual reads the QubesDB entries at paths, keeping the values parse
// accepts; kind names what parse wants, for the warning about the others.
func readVirtual(cfg Config, db *qubesdb.Client, paths []string, parse func([]byte) (netip.Addr, bool), kind string) ([]netip.Addr, error) {
	var virtual []netip.Addr
	for _, path := range paths {
		value, err := db.Read(path)
		if errors.Is(err, qubesdb.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read QubesDB %s: %w", path, err)
		}
		addr, ok := parse(value)
		if !ok {
			cfg.Logger.Warn("ignoring QubesDB entry that is not "+kind+" address", "path", path, "value", fmt.Sprintf("%q", value))
			continue
		}
		virtual = append(virtual, addr)
	}
	return virtual, nil
}

// queueJob asks systemd for a job on unit without waiting for it, logging
// a failure rather than failing the run.
func queueJob(ctx context.Context, cfg Config, bus *dbus.Conn, job func(context.Context, *dbus.Conn, string) error, unit string) {
	if bus == nil {
		cfg.Logger.Warn("cannot ask systemd to restart a unit: no system bus", "unit", unit)
		return
	}
	callCtx, cancel := context.WithTimeout(ctx, cfg.BusTimeout)
	defer cancel()
	if err := job(callCtx, bus, unit); err != nil {
		cfg.Logger.Warn("systemd job request failed", "unit", unit, "error", err)
	}
}
