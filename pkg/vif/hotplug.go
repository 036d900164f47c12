package vif

import (
	"context"
	"errors"
	"io"
	iofs "io/fs"
	"log/slog"
	"time"

	"github.com/qubes-netvm/qnet/pkg/logging"
	"github.com/qubes-netvm/qnet/pkg/qubesdb"
	"github.com/qubes-netvm/qnet/pkg/xenstore"
)

// Config is how a hotplug run is set up: the paths and bounds of its steps
// (Options) and of what surrounds them.
type Config struct {
	Options
	// Vif and XenbusPath, when set, replace $vif and $XENBUS_PATH (a run by
	// hand).
	Vif, XenbusPath string
	// DryRun writes the plan to Stdout and changes nothing (no lock, no
	// status for the toolstack).
	DryRun  bool
	Verbose bool // log every step (debug level)
	// LockDir holds the per-vif locks; a run waits at most LockWait for
	// another run of the same vif.
	LockDir  string
	LockWait time.Duration
	Timeout  time.Duration // bound on each XenStore and QubesDB request
	// HotplugLog is the file standard error is appended to when the
	// toolstack runs the program (empty: none).
	HotplugLog     string
	Stdout, Stderr io.Writer
}

// DefaultConfig is the configuration of a Qubes network qube.
func DefaultConfig() Config {
	return Config{
		Options:    DefaultOptions(),
		LockDir:    "/run/qubes-vif-route",
		LockWait:   30 * time.Second,
		Timeout:    5 * time.Second,
		HotplugLog: logging.XenHotplugLog,
	}
}

// Hotplug is one run of the hotplug script: it decodes args and the
// environment (getenv) as the toolstack passes them, serialises the run
// with other runs for the same vif, reads XenStore and QubesDB, applies
// (or, with DryRun, describes) the plan, and reports the outcome where the
// toolstack waits for it: hotplug-status connected after online, or
// hotplug-error and status error after a failure. Every failure is logged
// before it is returned; the caller only has to exit non-zero.
func Hotplug(ctx context.Context, args []string, getenv func(string) string, cfg Config) error {
	var stderrErr error
	if cfg.HotplugLog != "" && runByToolstack(getenv) {
		stderrErr = logging.AppendStderr(cfg.HotplugLog)
	}
	level := slog.LevelInfo
	if cfg.Verbose {
		level = slog.LevelDebug
	}
	log, closeLog := logging.New(logging.Options{Tag: "vif-route-qubes", Level: level, Stderr: cfg.Stderr})
	defer closeLog()
	switch {
	case errors.Is(stderrErr, iofs.ErrNotExist):
		log.Debug("no Xen hotplug log directory: standard error stays where it was", "err", stderrErr)
	case stderrErr != nil:
		log.Warn("standard error stays where it was", "err", stderrErr)
	}

	env := func(k string) string {
		switch {
		case k == "vif" && cfg.Vif != "":
			return cfg.Vif
		case k == "XENBUS_PATH" && cfg.XenbusPath != "":
			return cfg.XenbusPath
		}
		return getenv(k)
	}
	inv, err := ParseInvocation(args, env)
	if err != nil {
		log.Error(err.Error())
		return err
	}
	if inv.Action == Ignore {
		log.Debug("nothing to do", "command", inv.Command, "type_if", inv.TypeIf)
		return nil
	}
	return hotplug(ctx, inv, cfg, log.With("vif", inv.Vif))
}

// hotplug runs a decoded invocation that asks for online or offline.
func hotplug(ctx context.Context, inv Invocation, cfg Config, log *slog.Logger) error {
	if !cfg.DryRun {
		unlock, err := lockVif(ctx, cfg.LockDir, inv.Vif, cfg.LockWait, log)
		if err != nil {
			log.Error(err.Error())
			return err
		}
		defer unlock()
	}

	dialXenStore := func() (*xenstore.Client, error) { return xenstore.Dial(cfg.Timeout) }
	xs, err := dialXenStore()
	if err != nil {
		log.Error("cannot reach XenStore", "err", err)
		return err
	}
	defer xs.Close()

	var db *qubesdb.Client
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	src := Sources{
		XenStore: xs,
		QubesDB: func() (Store, error) {
			var err error
			db, err = qubesdb.Dial(qubesdb.SocketPath(), cfg.Timeout)
			return db, err
		},
	}
	if cfg.DryRun {
		if err := describeInvocation(cfg.Stdout, inv, src, cfg.Options, log); err != nil {
			log.Error(inv.Command + " failed: " + err.Error())
			return err
		}
		return nil
	}
	start := time.Now()
	if err := applyInvocation(ctx, inv, src, cfg.Options, log); err != nil {
		log.Error(inv.Command + " failed: " + err.Error())
		if werr := reportError(dialXenStore, inv.XenbusPath, err.Error()); werr != nil {
			log.Error("cannot report the failure to the toolstack", "err", werr)
		}
		return err
	}
	if inv.Action == Online {
		if err := reportConnected(xs, inv.XenbusPath); err != nil {
			log.Error("cannot report success to the toolstack", "err", err)
			return err
		}
	}
	log.Debug(inv.Command+" done", "took", time.Since(start))
	return nil
}
