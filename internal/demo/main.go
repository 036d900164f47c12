// Command demo runs a whole Qubes network qube in network namespaces and
// drives the project's two binaries exactly as Xen and NetworkManager do,
// proving the result with real traffic: `make demo`.
//
// The demo itself runs in a child process (the hidden "owner" subcommand)
// that owns everything it creates: the namespaces are named after its PID,
// and with --keep it stays alive serving the fake XenStore and QubesDB while
// the command the user typed returns. A kept sandbox therefore counts as a
// live run for the sandbox package's leftover sweep, and `--clean` finds it
// through its state file under /run/qnet-demo.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/spf13/pflag"
)

// The main goroutine keeps the main thread, for two per-thread kernel
// attributes: the parent-death signal the owner clears when it detaches
// belongs to its main thread (other threads never had one), and the front
// must fork the owner from a thread that lives as long as the process.
func init() { runtime.LockOSThread() }

// ownerCommand is the hidden subcommand the front process re-executes
// itself with.
const ownerCommand = "owner"

const usage = `Usage: demo [--keep] [--bin-dir DIR] [-v]
       demo --clean

Builds a Qubes network qube, two client qubes (plus a NAT-mode one) and an
upstream network with DNS resolvers in network namespaces, runs
vif-route-qubes and qubes-setup-dnat-to-ns as Xen and NetworkManager do,
checks the result with real traffic and removes everything again. Needs root.

Flags:
`

// options are the demo's command-line settings, shared by the front and
// the owner process.
type options struct {
	keep    bool
	clean   bool
	verbose bool
	binDir  string
}

func main() {
	args := os.Args[1:]
	owner := len(args) > 0 && args[0] == ownerCommand
	if owner {
		args = args[1:]
	}
	fs := pflag.NewFlagSet("demo", pflag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, usage); fs.PrintDefaults() }
	var opts options
	fs.BoolVar(&opts.keep, "keep", false, "leave the sandbox up and print how to explore and remove it")
	fs.BoolVar(&opts.clean, "clean", false, "remove what a kept demo left up, then exit")
	fs.BoolVarP(&opts.verbose, "verbose", "v", false, "show the binaries' own logs, with step timings")
	fs.StringVar(&opts.binDir, "bin-dir", "bin", "directory holding vif-route-qubes and qubes-setup-dnat-to-ns")
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "demo: %v\n", err)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "demo: needs root (it creates network namespaces and nftables rules); nothing was touched. Run: sudo make demo")
		os.Exit(1)
	}
	switch {
	case opts.clean:
		os.Exit(clean(os.Stdout))
	case owner:
		os.Exit(runOwner(opts))
	}
	if missing := missingTools(); len(missing) > 0 {
		fmt.Fprintf(os.Stderr, "demo: missing tools %v; run scripts/install-deps.sh as root (or: make demo)\n", missing)
		os.Exit(1)
	}
	os.Exit(runFront(opts))
}

// missingTools lists the programs the sandbox drives that are not on PATH.
func missingTools() []string {
	var missing []string
	for _, tool := range []string{"ip", "nft", "dnsmasq", "ping"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	return missing
}
