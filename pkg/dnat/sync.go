package dnat

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
	"github.com/qubes-netvm/qnet/pkg/resolvconf"
	"github.com/qubes-netvm/qnet/pkg/resolved"
	"github.com/qubes-netvm/qnet/pkg/systemd"
)

// Defaults for Config, matching the paths upstream's script uses.
const (
	DefaultResolvConf   = "/etc/resolv.conf"
	DefaultFirewallFlag = "/run/qubes-service/qubes-firewall"
	DefaultBusTimeout   = 2 * time.Second
	firewallUnit        = "qubes-firewall.service"
)

// The QubesDB entries naming the virtual DNS addresses, in priority order.
var virtualDNSPaths = []string{"/qubes-netvm-primary-dns", "/qubes-netvm-secondary-dns"}

// Config says where a run finds its inputs and what it touches.
type Config struct {
	QubesDBSocket string        // QubesDB daemon socket
	ResolvConf    string        // read when resolved cannot be asked
	FirewallFlag  string        // if this file exists, qubes-firewall is reloaded on a change
	BusTimeout    time.Duration // bounds the bus connection and each D-Bus call
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
		NFT:           NewNFT(),
		Logger:        logger,
	}
}

// Inputs are what the rules are planned from.
type Inputs struct {
	Virtual []netip.Addr // from QubesDB
	Real    []netip.Addr // from resolved, or resolv.conf
	Source  string       // where Real came from
}

// Result is the outcome of Sync.
type Result struct {
	Inputs
	Rules []Rule
	// Changed is false when the chain already held Rules; then nothing
	// was touched.
	Changed bool
}

// Sync makes the kernel's chain match the current DNS configuration. When
// the chain already holds the planned rules it changes nothing; otherwise it
// asks systemd to reload qubes-firewall (if that service is enabled),
// replaces the chain, and try-restarts cfg.RestartOnChange. Failures to
// reach systemd are logged, not returned, as upstream ignores them.
func Sync(ctx context.Context, cfg Config) (Result, error) {
	bus := connectBus(ctx, cfg)
	if bus != nil {
		defer bus.Close()
	}
	res, err := preview(ctx, cfg, bus)
	if err != nil || !res.Changed {
		return res, err
	}
	if _, err := os.Stat(cfg.FirewallFlag); err == nil {
		queueJob(ctx, cfg, bus, systemd.ReloadOrTryRestartUnit, firewallUnit)
	}
	if err := cfg.NFT.Replace(res.Rules); err != nil {
		return res, err
	}
	for _, unit := range cfg.RestartOnChange {
		queueJob(ctx, cfg, bus, systemd.TryRestartUnit, unit)
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
	res := Result{Inputs: in, Rules: Plan(in.Virtual, in.Real)}
	same, err := cfg.NFT.Matches(res.Rules)
	res.Changed = !same
	return res, err
}

// discover reads the virtual addresses from QubesDB and the real servers
// from resolved over bus, falling back to resolv.conf when bus is nil,
// resolved is not running or it answers without a value.
func discover(ctx context.Context, cfg Config, bus *dbus.Conn) (Inputs, error) {
	virtual, err := readVirtual(cfg)
	if err != nil {
		return Inputs{}, err
	}
	in := Inputs{Virtual: virtual}
	if bus != nil {
		callCtx, cancel := context.WithTimeout(ctx, cfg.BusTimeout)
		servers, err := resolved.DNS(callCtx, bus)
		cancel()
		switch {
		case err == nil:
			in.Real, in.Source = resolved.IPv4(servers), "systemd-resolved"
			return in, nil
		case !errors.Is(err, resolved.ErrUnavailable):
			return Inputs{}, err
		}
		cfg.Logger.Debug("falling back to resolv.conf", "reason", err)
	}
	real, err := resolvconf.ReadFile(cfg.ResolvConf)
	if err != nil {
		return Inputs{}, err
	}
	in.Real, in.Source = real, cfg.ResolvConf
	return in, nil
}

// connectBus returns a system bus connection, or nil when there is no
// usable bus: then DNS comes from resolv.conf (upstream crashes when the
// bus socket is missing and falls back when the bus does not answer).
func connectBus(ctx context.Context, cfg Config) *dbus.Conn {
	bus, err := systemd.ConnectSystemBus(ctx, cfg.BusTimeout)
	if err != nil {
		cfg.Logger.Debug("no system bus, DNS from resolv.conf only", "error", err)
		return nil
	}
	return bus
}

func readVirtual(cfg Config) ([]netip.Addr, error) {
	db, err := qubesdb.Dial(cfg.QubesDBSocket, cfg.BusTimeout)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var virtual []netip.Addr
	for _, path := range virtualDNSPaths {
		value, err := db.Read(path)
		if errors.Is(err, qubesdb.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read QubesDB %s: %w", path, err)
		}
		addr, ok := ParseVirtual(value)
		if !ok {
			cfg.Logger.Warn("ignoring QubesDB entry that is not an IPv4 address", "path", path, "value", fmt.Sprintf("%q", value))
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
