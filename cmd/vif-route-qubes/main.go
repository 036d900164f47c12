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
	iofs "io/fs"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/pflag"

	"github.com/qubes-netvm/qnet/internal/version"
	"github.com/qubes-netvm/qnet/pkg/hotplug"
	"github.com/qubes-netvm/qnet/pkg/logging"
	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/vifroute"
	"github.com/qubes-netvm/qnet/pkg/xenstore"
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
	fs := pflag.NewFlagSet("vif-route-qubes", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	dryRun := fs.Bool("dry-run", false, "print the plan (every change, in order) and change nothing")
	verbose := fs.BoolP("verbose", "v", false, "log every step (debug level)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	vif := fs.String("vif", "", "backend interface name (instead of $vif)")
	xenbusPath := fs.String("xenbus-path", "", "the device's XenStore directory (instead of $XENBUS_PATH)")
	linkWait := fs.Duration("link-wait", 10*time.Second, "how long online waits for a vif that does not exist yet")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each XenStore and QubesDB request")
	opts := vifroute.DefaultOptions()
	fs.StringVar(&opts.HooksDir, "hooks-dir", opts.HooksDir, "directory of the user's network hooks")
	fs.StringVar(&opts.HardeningConf, "hardening-conf", opts.HardeningConf, "sysctl.d file applied when QubesDB asks for hardening")
	fs.StringVar(&opts.LockPath, "lock-file", opts.LockPath, "lock serialising flow-offload table rebuilds")
	lockDir := fs.String("lock-dir", "/run/qubes-vif-route", "directory of the per-vif locks serialising runs for the same vif")
	lockWait := fs.Duration("lock-wait", 30*time.Second, "how long a run waits for another run of the same vif")
	hotplugLog := fs.String("hotplug-log", logging.XenHotplugLog, "file standard error is appended to when the toolstack runs the program (empty: none)")
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
	env := func(k string) string {
		switch {
		case k == "vif" && *vif != "":
			return *vif
		case k == "XENBUS_PATH" && *xenbusPath != "":
			return *xenbusPath
		}
		return getenv(k)
	}
	var stderrErr error
	if *hotplugLog != "" && hotplug.RunByToolstack(getenv) {
		stderrErr = logging.AppendStderr(*hotplugLog)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log, closeLog := logging.New(logging.Options{Tag: "vif-route-qubes", Level: level, Stderr: stderr})
	defer closeLog()
	switch {
	case errors.Is(stderrErr, iofs.ErrNotExist):
		log.Debug("no Xen hotplug log directory: standard error stays where it was", "err", stderrErr)
	case stderrErr != nil:
		log.Warn("standard error stays where it was", "err", stderrErr)
	}

	inv, err := hotplug.Parse(fs.Args(), env)
	if err != nil {
		log.Error(err.Error())
		return 1
	}
	if inv.Action == hotplug.Ignore {
		log.Debug("nothing to do", "command", inv.Command, "type_if", inv.TypeIf)
		return 0
	}
	log = log.With("vif", inv.Vif)
	if !*dryRun {
		unlock, err := hotplug.LockVif(*lockDir, inv.Vif, *lockWait, log)
		if err != nil {
			log.Error(err.Error())
			return 1
		}
		defer unlock()
	}

	dialXenStore := func() (*xenstore.Client, error) { return xenstore.Dial(*timeout) }
	xs, err := dialXenStore()
	if err != nil {
		log.Error("cannot reach XenStore", "err", err)
		return 1
	}
	defer xs.Close()

	opts.LinkWait = *linkWait
	var db *qubesdb.Client
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	src := vifroute.Sources{
		XenStore: xs,
		QubesDB: func() (vifroute.Store, error) {
			var err error
			db, err = qubesdb.Dial(qubesdb.SocketPath(), *timeout)
			return db, err
		},
	}
	var plan io.Writer
	if *dryRun {
		plan = stdout
	}
	start := time.Now()
	err = vifroute.Run(context.Background(), inv, src, opts, log, plan)
	if err != nil {
		log.Error(inv.Command + " failed: " + err.Error())
		if !*dryRun {
			if werr := hotplug.ReportError(dialXenStore, inv.XenbusPath, err.Error()); werr != nil {
				log.Error("cannot report the failure to the toolstack", "err", werr)
			}
		}
		return 1
	}
	if *dryRun {
		return 0
	}
	if inv.Action == hotplug.Online {
		if err := hotplug.ReportConnected(xs, inv.XenbusPath); err != nil {
			log.Error("cannot report success to the toolstack", "err", err)
			return 1
		}
	}
	log.Debug(inv.Command+" done", "took", time.Since(start))
	return 0
}
