package vif

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// Options are the system paths and bounds a run uses; tests point them at
// temporary files.
type Options struct {
	HooksDir      string        // /rw/config/network-hooks.d
	HardeningConf string        // /etc/sysctl.d/81-qubes.conf.optional
	LockPath      string        // serialises flowtable device-list changes across runs
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

// OnFailure says what Apply does with the steps it completed when one
// fails.
type OnFailure bool

const (
	// Rollback undoes them in reverse (online: the kernel is left as it
	// was).
	Rollback OnFailure = true
	// KeepDone leaves them (offline: what was removed stays removed).
	KeepDone OnFailure = false
)

// Apply runs the steps in order and returns the facts they learnt. When
// one fails it returns the failure, after undoing the completed steps and
// the part of the failed one it reported if onFailure is Rollback.
// inject, when not nil, is called before each step and may fail it: the
// tests use it to prove that a failure at any point leaves nothing behind.
func Apply(ctx context.Context, k *Kernel, steps []Step, onFailure OnFailure, inject func(i int, s Step) error) (Facts, error) {
	var undos undoStack
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return k.facts, unwind(k.log, undos, onFailure, fmt.Errorf("%s: %w", s.Desc, err))
		}
		if inject != nil {
			if err := inject(i, s); err != nil {
				return k.facts, unwind(k.log, undos, onFailure, fmt.Errorf("%s: %w", s.Desc, err))
			}
		}
		start := time.Now()
		undo, err := s.Do(k)
		k.log.Debug("step", "n", i+1, "do", s.Desc, "took", time.Since(start))
		// A step that fails half-way returns the undo of its own part
		// together with the error.
		undos.push(undo)
		if err != nil {
			return k.facts, unwind(k.log, undos, onFailure, err)
		}
	}
	return k.facts, nil
}

func unwind(log *slog.Logger, undos undoStack, onFailure OnFailure, cause error) error {
	if onFailure != Rollback {
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

// Steps returns the plan: the ordered steps for the run's action.
func Steps(in *Inputs, opts Options) []Step {
	if in.Action == Offline {
		return planOffline(in, opts)
	}
	return planOnline(in, opts)
}

// applyInvocation performs one hotplug invocation: gather, plan, apply.
func applyInvocation(ctx context.Context, inv Invocation, src Sources, opts Options, log *slog.Logger) error {
	in, err := Gather(inv, src, log)
	if err != nil {
		return err
	}
	steps := Steps(in, opts)
	k, err := NewKernel(ctx, log, opts)
	if err != nil {
		return err
	}
	defer k.Close()
	onFailure := KeepDone
	if in.Action == Online {
		onFailure = Rollback
	}
	facts, err := Apply(ctx, k, steps, onFailure, nil)
	if facts.Link != nil {
		log.Debug("applied", "device", facts.Link.Attrs().Name, "ipv6", facts.IPv6)
	}
	return err
}

// describeInvocation gathers the invocation's inputs and writes its plan to w, one
// line per step, changing nothing.
func describeInvocation(w io.Writer, inv Invocation, src Sources, opts Options, log *slog.Logger) error {
	in, err := Gather(inv, src, log)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "vif-route-qubes %s %s (domain %d, metric %d):\n", in.Action, in.Name, in.Domid, in.Metric)
	Describe(w, Steps(in, opts))
	return nil
}
