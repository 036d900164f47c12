// Command demo is `make demo`: a Qubes network qube in network namespaces,
// built by internal/sandbox (the stage of the end-to-end tests), driven by the
// project's two binaries exactly as Xen and NetworkManager drive them, each
// step checked with real traffic and printed with ✓ or ✗.
//
// It is one process: Ctrl-C or termination stops the step in progress and
// removes everything. With --keep it leaves the namespaces (and their
// dnsmasq resolvers) up and exits; --clean removes such kept sandboxes
// (sandbox.RemoveKept), and what a killed demo left.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/internal/sandbox"
)

const usage = `Usage: demo [--keep] [--bin-dir DIR] [-v]
       demo --clean

Builds a Qubes network qube, three client qubes (dual stack, IPv4 only, NAT
mode) and an upstream network with DNS resolvers in network namespaces, runs
vif-route-qubes and qubes-setup-dnat-to-ns as Xen and NetworkManager do,
checks the result with real traffic and removes everything again. Needs root.

Flags:
`

// The network qube's view of itself as QubesDB tells it.
const (
	backIPv4     = sandbox.DefaultGateway
	backIPv6     = "fd09:24ef:4179::a8a:1"
	primaryDNS   = "10.139.1.1"
	secondaryDNS = "10.139.1.2"
	// The IPv6 virtual DNS addresses dom0 will write once Qubes offers them.
	primaryDNS6   = "fd09:24ef:4179::a8b:1"
	secondaryDNS6 = "fd09:24ef:4179::a8b:2"
)

// client is one client qube of the demo.
type client struct {
	label string
	spec  sandbox.ClientSpec
	// xenIPs is XenStore's ip value: the addresses the network qube routes
	// (for the NAT-mode client its real address, not the one it knows).
	xenIPs []string
	// visibleIP is set for the NAT-mode client: the only address it knows.
	visibleIP string
	pings     []string
	spoofs    []string // source addresses the client has no right to

	*sandbox.Client
	xenbusPath string
}

// natNamespace is the namespace vif-route-qubes creates for a NAT-mode
// client, "" for the others.
func (c *client) natNamespace() string {
	if c.visibleIP == "" {
		return ""
	}
	return fmt.Sprintf("vif%d.%d-nat", c.spec.Domid, c.spec.Devid)
}

// newClients are the demo's clients. The NAT-mode one knows 10.137.0.213
// behind gateway 10.138.0.213; the network qube routes its real
// 10.137.0.13. Its domid comes from the PID because its NAT namespace
// (vif<domid>.0-nat) is global: two demos at once must not share it.
func newClients() []*client {
	natDomid := 1000 + os.Getpid()%30000
	return []*client{
		{
			label:  "dual stack",
			spec:   sandbox.ClientSpec{Domid: 11, IPv4: "10.137.0.11", IPv6: "fd09:24ef:4179::a89:b", Gateway6: backIPv6, DeferVif: true},
			xenIPs: []string{"10.137.0.11", "fd09:24ef:4179::a89:b"},
			pings:  []string{sandbox.InternetHost, sandbox.InternetHost6},
			spoofs: []string{"10.137.0.99", "fd09:24ef:4179::a89:63"},
		},
		{
			label:  "IPv4 only",
			spec:   sandbox.ClientSpec{Domid: 12, IPv4: "10.137.0.12", DeferVif: true},
			xenIPs: []string{"10.137.0.12"},
			pings:  []string{sandbox.InternetHost},
			spoofs: []string{"10.137.0.98"},
		},
		{
			label:     "NAT mode",
			spec:      sandbox.ClientSpec{Domid: natDomid, IPv4: "10.137.0.213", Gateway: "10.138.0.213", DeferVif: true},
			xenIPs:    []string{"10.137.0.13"},
			visibleIP: "10.137.0.213",
			pings:     []string{sandbox.InternetHost},
		},
	}
}

type options struct {
	keep, clean, verbose bool
	binDir               string
}

func main() {
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	var opts options
	fs.BoolVar(&opts.keep, "keep", false, "leave the sandbox up and print how to explore and remove it")
	fs.BoolVar(&opts.clean, "clean", false, "remove what a kept (or killed) demo left up, then exit")
	fs.BoolVarP(&opts.verbose, "verbose", "v", false, "show the binaries' own logs")
	fs.StringVar(&opts.binDir, "bin-dir", "bin", "directory holding vif-route-qubes and qubes-setup-dnat-to-ns")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it creates network namespaces and nftables rules); nothing was touched. Run: sudo make demo")
		os.Exit(1)
	}
	if opts.clean {
		os.Exit(clean())
	}
	for _, tool := range []string{"ip", "nft", "dnsmasq", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "demo: %s is missing; run scripts/install-deps.sh as root (or: make demo)\n", tool)
			os.Exit(1)
		}
	}
	if dir, err := filepath.Abs(opts.binDir); err == nil {
		opts.binDir = dir
	}
	// A closed terminal or pipe (`make demo | head`) must not kill the demo
	// before it has removed the sandbox: writes then just fail.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	code := (&demo{ctx: ctx, opts: opts, clients: newClients()}).run()
	stop()
	os.Exit(code)
}

// clean removes kept demos and what killed ones left.
func clean() int {
	if err := errors.Join(sandbox.RemoveKept(), sandbox.RemoveLeftovers()); err != nil {
		fmt.Printf("✗ clean: %v\n", err)
		return 1
	}
	fmt.Println("✓ clean: no demo sandbox left")
	return 0
}
