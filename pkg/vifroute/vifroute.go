// Package vifroute configures a client qube's backend interface in routed
// mode (vif-route-qubes online) and removes that configuration (offline).
//
// A run gathers its inputs (XenStore, QubesDB, sysctls), plans an ordered
// list of steps, and applies them. A plan is data: each Step carries a
// Change (kind, object, address, value) that tests compare and --dry-run
// describes; what only applying can learn (the device after a rename,
// whether IPv6 is on) is the documented Facts result of the steps that
// learn it. Online is transactional: each step that changes the kernel
// returns how to undo exactly what it changed, also when it fails half-way,
// and a failure undoes the run's steps in reverse, leaving the kernel as
// it was. Every step tolerates state that is already in place, so online
// twice converges and offline of a vif that never came online changes
// nothing.
//
// The order of online, and why:
//   - the base ruleset is checked first: without its anti-spoofing sets
//     the vif cannot be protected, so nothing is changed;
//   - the device is found (and renamed) before anything names it;
//   - proxy_arp, the flowtable, NAT mode and hardening configure the
//     device while it is still down;
//   - conntrack is purged and the neighbours and anti-spoofing elements
//     are added BEFORE the link comes up, so that no packet of the client
//     passes before its source address is checked and no flow of an
//     earlier owner of the address survives;
//   - the link comes up, then each address gets its route and the hooks
//     (which expect the route), then the back addresses and proxy_ndp.
//
// Offline removes the anti-spoofing elements first (the client loses its
// right to send at once) together with the vif's flowtable device, in one
// transaction so that the kernel waits for one RCU grace period; then the
// conntrack entries, neighbours, routes (each followed by the hooks),
// back addresses and the NAT namespace.
package vifroute

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/qubes-netvm/qnet/pkg/hotplug"
)

// Options are the system paths and bounds a run uses; tests point them at
// temporary files.
type Options struct {
	HooksDir      string        // /rw/config/network-hooks.d
	HardeningConf string        // /etc/sysctl.d/81-qubes.conf.optional
	LockPath      string        // serialises flowtable rebuilds across runs
	ProcSys       string        // /proc/sys, for interface listings and hardening globs
	LinkWait      time.Duration // how long online waits for a vif that is not there yet
}

// DefaultOptions are the paths of a Qubes network qube.
func DefaultOptions() Options {
	return Options{
		HooksDir:      "/rw/config/network-hooks.d",
		HardeningConf: "/etc/sysctl.d/81-qubes.conf.optional",
		LockPath:      "/run/qubes-vif-route.lock",
		ProcSys:       "/proc/sys",
		LinkWait:      10 * time.Second,
	}
}

// Step is one change to the kernel, in the order upstream makes it.
type Step struct {
	// Change is what the step changes, as data.
	Change Change
	// Desc says what the step does, in the terms of the shell commands it
	// replaces; --dry-run prints it.
	Desc string
	// Do makes the change and returns how to revert exactly what it
	// changed (nil when it changed nothing or cannot be reverted), also
	// when it fails after changing part of it.
	Do func(k *Kernel) (undo func() error, err error)
}

// Describe writes one line per step.
func Describe(w io.Writer, steps []Step) {
	for i, s := range steps {
		fmt.Fprintf(w, "%2d. %s\n", i+1, s.Desc)
	}
}

// Apply runs the steps in order and returns the facts they learnt. When
// one fails it undoes the completed steps, and the part of the failed one
// it reported, in reverse (rollback=true, for online) and returns the
// failure.
// inject, when not nil, is called before each step and may fail it: the
// tests use it to prove that a failure at any point leaves nothing behind.
func Apply(ctx context.Context, k *Kernel, steps []Step, rollback bool, inject func(i int, s Step) error) (Facts, error) {
	var undos undoStack
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return k.facts, unwind(k.log, undos, rollback, fmt.Errorf("%s: %w", s.Desc, err))
		}
		if inject != nil {
			if err := inject(i, s); err != nil {
				return k.facts, unwind(k.log, undos, rollback, fmt.Errorf("%s: %w", s.Desc, err))
			}
		}
		start := time.Now()
		undo, err := s.Do(k)
		k.log.Debug("step", "n", i+1, "do", s.Desc, "took", time.Since(start))
		// A step that fails half-way returns the undo of its own part
		// together with the error.
		undos.push(undo)
		if err != nil {
			return k.facts, unwind(k.log, undos, rollback, err)
		}
	}
	return k.facts, nil
}

func unwind(log *slog.Logger, undos undoStack, rollback bool, cause error) error {
	if !rollback {
		return cause
	}
	if err := undos.run(); err != nil {
		log.Error("rollback incomplete", "err", err)
		return fmt.Errorf("%w (and rollback failed: %w)", cause, err)
	}
	return cause
}

// undoStack collects how to revert changes; run reverts them newest first
// and reports every revert that failed.
type undoStack []func() error

func (u *undoStack) push(undo func() error) {
	if undo != nil {
		*u = append(*u, undo)
	}
}

func (u undoStack) run() error {
	var failed []error
	for i := len(u) - 1; i >= 0; i-- {
		if err := u[i](); err != nil {
			failed = append(failed, err)
		}
	}
	return errors.Join(failed...)
}

// Plan returns the steps for the run's action.
func Plan(in *Inputs, opts Options) []Step {
	if in.Action == hotplug.Offline {
		return planOffline(in, opts)
	}
	return planOnline(in, opts)
}

// Run performs one hotplug invocation: gather, plan, then apply (or, with
// dryRun set, describe the plan there and change nothing).
func Run(ctx context.Context, inv hotplug.Invocation, src Sources, opts Options, log *slog.Logger, dryRun io.Writer) error {
	in, err := Gather(inv, src, log)
	if err != nil {
		return err
	}
	steps := Plan(in, opts)
	if dryRun != nil {
		fmt.Fprintf(dryRun, "vif-route-qubes %s %s (domain %d, metric %d):\n", in.Action, in.Name, in.Domid, in.Metric)
		Describe(dryRun, steps)
		return nil
	}
	k, err := NewKernel(ctx, log, opts)
	if err != nil {
		return err
	}
	defer k.Close()
	facts, err := Apply(ctx, k, steps, in.Action == hotplug.Online, nil)
	if facts.Link != nil {
		log.Debug("applied", "device", facts.Link.Attrs().Name, "ipv6", facts.IPv6)
	}
	return err
}
