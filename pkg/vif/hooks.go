// This file runs the user's network hooks: the executables a Qubes
// network qube keeps in /rw/config/network-hooks.d, called whenever a client
// vif goes online or offline.

package vif

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// HooksDir is where Qubes keeps the network hooks (persistent across reboots of
// a template-based qube).
const HooksDir = "/rw/config/network-hooks.d"

// hookCall is what a hook is told, as its four arguments.
type hookCall struct {
	Command string // "online" or "offline"
	Vif     string // the backend interface, e.g. vif12.0
	VifType string // the device's XenStore "type" value
	Addr    string // one client address; empty when the vif has none
}

// Run runs every hook in dir, one at a time, as
//
//	hook <command> <vif> <vif type> <address>
//
// with the address passed as an empty fourth argument when there is none.
// Hooks are the entries that are, or link to, regular files the process may
// execute, taken in byte order of their names (os.ReadDir's order, the same
// as a bash glob in the C locale; a locale-sorted glob could differ). Like
// the glob "dir/*" upstream uses, names starting with '.' are not hooks.
//
// Hooks get the environment Xen's hotplug helper gives the scripts it runs
// (see hookEnviron), read /dev/null, and write both output streams to this
// process's standard error, which goes to Xen's hotplug log when the
// toolstack runs the program. A hook that fails is logged and the next one runs: hooks are the
// user's additions and must not make the vif fail. A missing dir means no
// hooks. Once ctx is done, no further hook is started.
func runHookDir(ctx context.Context, log *slog.Logger, dir string, inv hookCall) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		log.Debug("no network hooks directory", "dir", dir)
		return
	}
	if err != nil {
		// ReadDir returns the entries it read before the error; run those.
		log.Warn("cannot list all network hooks", "dir", dir, "err", err)
	}
	for _, e := range entries {
		hook := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") {
			log.Debug("skipping hidden file in network hooks", "hook", hook)
			continue
		}
		if reason := notRunnable(hook); reason != "" {
			log.Debug("skipping network hook", "hook", hook, "reason", reason)
			continue
		}
		if err := ctx.Err(); err != nil {
			log.Warn("network hooks cut short", "hook", hook, "err", err)
			return
		}
		log.Debug("running network hook", "hook", hook, "command", inv.Command, "vif", inv.Vif, "addr", inv.Addr)
		cmd := exec.CommandContext(ctx, hook, inv.Command, inv.Vif, inv.VifType, inv.Addr)
		cmd.Env = hookEnviron(os.Environ())
		cmd.Stdout = os.Stderr
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			log.Warn("network hook failed", "hook", hook, "command", inv.Command, "vif", inv.Vif,
				"addr", inv.Addr, "status", err.Error())
		}
	}
}

// notRunnable says why path is not a hook, or "" when it is one. It asks
// access(2), as bash's -x test does, so a noexec mount or a file without
// any execute bit is skipped even for root.
func notRunnable(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return err.Error()
	}
	if !fi.Mode().IsRegular() {
		return "not a regular file"
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return "not executable: " + err.Error()
	}
	return ""
}

// xenPath is what Xen's hotplug helper puts before the inherited PATH: its
// own binary directories (a Qubes network qube's Xen tools live in
// /usr/bin, /usr/sbin and /usr/libexec/xen/bin), then the system ones.
const xenPath = "/usr/bin:/usr/sbin:/usr/libexec/xen/bin:/sbin:/bin:/usr/bin:/usr/sbin"

// hookEnviron returns env (KEY=VALUE entries) as Xen's hotplug helper
// (xen-hotplug-common.sh) sets it up for every hotplug script, and so for
// upstream's network hooks: PATH is xenPath followed by the inherited PATH,
// LANG is POSIX, and no LC_* variable is left, so that hooks parse command
// output in the locale they were written for. Everything else is kept.
func hookEnviron(env []string) []string {
	out := make([]string, 0, len(env)+2)
	path := xenPath
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		switch {
		case k == "PATH":
			if v != "" {
				path += ":" + v
			}
		case k == "LANG", strings.HasPrefix(k, "LC_"):
		default:
			out = append(out, kv)
		}
	}
	return append(out, "PATH="+path, "LANG=POSIX")
}
