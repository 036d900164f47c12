// Command qubes-setup-dnat-to-ns points the virtual DNS addresses of a Qubes
// network qube at the real DNS servers by DNAT, a drop-in for upstream's
// /usr/lib/qubes/qubes-setup-dnat-to-ns. It exits 0 when it replaced the
// rules, 100 when they were already right (nothing touched), 1 on error.
// With --watch it stays running and keeps the rules right as the DNS
// changes.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/internal/version"
	"github.com/qubes-netvm/qnet/pkg/dns"
	"github.com/qubes-netvm/qnet/pkg/logging"
)

// Exit codes, as upstream's script and its callers define them.
const (
	exitReplaced  = 0
	exitError     = 1
	exitUnchanged = 100
)

const usage = `Usage: qubes-setup-dnat-to-ns [flags]

Points the virtual DNS addresses client qubes use (QubesDB
/qubes-netvm-primary-dns and /qubes-netvm-secondary-dns) at the real DNS
servers (systemd-resolved, else resolv.conf) with the nftables chain
ip qubes dnat-dns. When QubesDB also names IPv6 virtual addresses
(/qubes-netvm-primary-dns6, /qubes-netvm-secondary-dns6), chain ip6 qubes
dnat-dns does the same for IPv6, and a family without a real server is
refused at once (chains dnat-dns-reject). Exit status: 0 rules replaced,
100 already up to date, 1 error.

Flags:
`

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("qubes-setup-dnat-to-ns", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	dryRun := fs.Bool("dry-run", false, "print the planned nft transaction and change nothing")
	verbose := fs.BoolP("verbose", "v", false, "log every step (debug level)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	watch := fs.Bool("watch", false, "stay running and re-apply the rules whenever the DNS servers change (service mode)")
	cfg := dns.DefaultConfig(nil)
	fs.StringVar(&cfg.ResolvConf, "resolv-conf", cfg.ResolvConf, "resolv.conf to read when systemd-resolved cannot be asked")
	fs.StringVar(&cfg.FirewallFlag, "qubes-firewall-flag", cfg.FirewallFlag, "reload qubes-firewall on a change only if this file exists")
	fs.DurationVar(&cfg.BusTimeout, "bus-timeout", cfg.BusTimeout, "bound on the bus connection, each D-Bus call and QubesDB")
	fs.StringVar(&cfg.LockPath, "lock-file", cfg.LockPath, "file locked while a run reads its inputs and replaces the chains")
	_ = fs.MarkHidden("qubes-firewall-flag") // for tests; the path is fixed in a qube
	_ = fs.MarkHidden("bus-timeout")
	_ = fs.MarkHidden("lock-file")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "qubes-setup-dnat-to-ns: %v (see --help)\n", err)
		return exitError
	}
	if *showVersion {
		fmt.Fprintln(stdout, "qubes-setup-dnat-to-ns", version.Version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "qubes-setup-dnat-to-ns: unexpected arguments %q\n", fs.Args())
		return exitError
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log, closeLog := logging.New(logging.Options{Tag: "qubes-setup-dnat-to-ns", Level: level, Stderr: stderr})
	defer closeLog()
	cfg.Logger = log

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	switch {
	case *dryRun:
		return printPlan(ctx, cfg, stdout, log)
	case *watch:
		cfg.RestartOnChange = []string{dns.UpdatesProxyUnit}
		if err := dns.Watch(ctx, dns.WatchOptions{Sync: cfg}); err != nil {
			log.Error("watch failed", "error", err)
			return exitError
		}
		return 0
	}
	res, err := dns.Sync(ctx, cfg)
	if err != nil {
		log.Error("cannot set up DNS DNAT", "error", err)
		return exitError
	}
	if !res.Changed {
		log.Debug("DNS DNAT rules already up to date", "servers", res.Real, "source", res.Source)
		return exitUnchanged
	}
	dns.LogReplaced(log, res)
	return exitReplaced
}

// printPlan prints the nft transaction a run would apply, reading the
// inputs and the kernel's chain but changing nothing.
func printPlan(ctx context.Context, cfg dns.Config, stdout io.Writer, log *slog.Logger) int {
	res, err := dns.Preview(ctx, cfg)
	if err != nil {
		log.Error("cannot work out the DNS DNAT rules", "error", err)
		return exitError
	}
	state := "already in place, a run would change nothing"
	if res.Changed {
		state = "a run would replace the chain"
	}
	fmt.Fprintf(stdout, "# virtual DNS %v, real DNS %v from %s: %s\n", res.Virtual, res.Real, res.Source, state)
	if len(res.Virtual6) > 0 {
		fmt.Fprintf(stdout, "# virtual IPv6 DNS %v, real IPv6 DNS %v\n", res.Virtual6, res.Real6)
	}
	fmt.Fprint(stdout, dns.Script(res.Rules))
	return 0
}
