// Command vif-route-qubes is the Xen hotplug script of a Qubes network qube:
// it configures a client qube's backend interface in routed mode (online)
// and removes that configuration (offline). It is invoked by libxl or
// `xl devd` exactly like the shell script it replaces:
//
//	vif-route-qubes online type_if=vif   (environment: vif, XENBUS_PATH, ...)
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/internal/version"
	"github.com/qubes-netvm/qnet/pkg/vif"
)

const usage = `Usage: vif-route-qubes [flags] online|offline|add|remove [KEY=VALUE ...]

Configures (online) or removes (offline) a client qube's backend vif in
routed mode. Xen's toolstack sets the environment: vif (the interface, e.g.
vif12.0) and XENBUS_PATH (its XenStore directory); KEY=VALUE arguments
override environment variables, as in Xen's vif-common.sh.

Flags:
`

func main() { os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)) }

func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	cfg := vif.DefaultConfig()
	cfg.Stdout, cfg.Stderr = stdout, stderr
	fs := pflag.NewFlagSet("vif-route-qubes", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	fs.BoolVar(&cfg.DryRun, "dry-run", false, "print the plan (every change, in order) and change nothing")
	fs.BoolVarP(&cfg.Verbose, "verbose", "v", false, "log every step (debug level)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.StringVar(&cfg.Vif, "vif", "", "backend interface name (instead of $vif)")
	fs.StringVar(&cfg.XenbusPath, "xenbus-path", "", "the device's XenStore directory (instead of $XENBUS_PATH)")
	fs.DurationVar(&cfg.LinkWait, "link-wait", cfg.LinkWait, "how long online waits for a vif that does not exist yet")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "bound on each XenStore and QubesDB request")
	fs.StringVar(&cfg.HooksDir, "hooks-dir", cfg.HooksDir, "directory of the user's network hooks")
	fs.StringVar(&cfg.HardeningConf, "hardening-conf", cfg.HardeningConf, "sysctl.d file applied when QubesDB asks for hardening")
	fs.StringVar(&cfg.LockPath, "lock-file", cfg.LockPath, "lock serialising changes to the flowtable's device list")
	fs.StringVar(&cfg.LockDir, "lock-dir", cfg.LockDir, "directory of the per-vif locks serialising runs for the same vif")
	fs.DurationVar(&cfg.LockWait, "lock-wait", cfg.LockWait, "how long a run waits for another run of the same vif")
	fs.StringVar(&cfg.HotplugLog, "hotplug-log", cfg.HotplugLog, "file standard error is appended to when the toolstack runs the program (empty: none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "vif-route-qubes: %v (see --help)\n", err)
		return 1
	}
	if *showVersion {
		fmt.Fprintln(stdout, "vif-route-qubes", version.Version)
		return 0
	}
	if err := vif.Hotplug(context.Background(), fs.Args(), getenv, cfg); err != nil {
		return 1 // vif.Hotplug has logged it
	}
	return 0
}
