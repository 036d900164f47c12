package vif

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

var errInjected = errors.New("injected failure")

// A failure at any point of online, including after the last step, undoes
// everything the run changed: the netvm's kernel state equals the state
// before the run, as `ip` and `nft` print it.
func TestFailureAtEachStepLeavesNothing(t *testing.T) {
	sb := testsupport.New(t, sandbox.Options{})
	c, err := sb.AddClient(sandbox.ClientSpec{Domid: 30, IPv4: "10.137.0.30", IPv6: "fd09:24ef:4179::a89:1e", Gateway6: "fd09:24ef:4179::a8a:1"})
	if err != nil {
		t.Fatal(err)
	}
	mac, _ := net.ParseMAC(c.Spec.MAC)
	dir := t.TempDir()
	in := &Inputs{
		Action: Online, Vif: c.Vif, Name: c.Vif, Domid: 30, Metric: Metric(30),
		Addrs:   []netip.Addr{netip.MustParseAddr("10.137.0.30"), netip.MustParseAddr("fd09:24ef:4179::a89:1e")},
		MAC:     mac,
		VifType: "vif",
		Gateway: netip.MustParseAddr("10.138.0.1"), Gateway6: netip.MustParseAddr("fd09:24ef:4179::a8a:1"),
		Harden: true,
	}
	opts := Options{
		HooksDir:      filepath.Join(dir, "hooks"),
		HardeningConf: filepath.Join(dir, "absent.conf"), // the built-in list
		LockPath:      filepath.Join(dir, "lock"),
		ProcSys:       "/proc/sys",
		LinkWait:      time.Second,
	}
	steps := Steps(in, opts)
	// A last step that always fails proves that a complete run is undone too.
	steps = append(steps, Step{Desc: "fail at the end", Do: func(*Kernel) (func() error, error) { return nil, errInjected }})
	log := quiet

	before, err := sb.NetVM.KernelState()
	if err != nil {
		t.Fatal(err)
	}
	for i := range steps {
		err := sb.NetVM.Do(func() error {
			k, err := NewKernel(context.Background(), log, opts)
			if err != nil {
				return err
			}
			defer k.Close()
			_, err = Apply(context.Background(), k, steps, Rollback, func(j int, s Step) error {
				if j == i {
					return errInjected
				}
				return nil
			})
			return err
		})
		if !errors.Is(err, errInjected) {
			t.Fatalf("failure before step %d (%s): got %v", i+1, steps[i].Desc, err)
		}
		after, err := sb.NetVM.KernelState()
		if err != nil {
			t.Fatal(err)
		}
		if after != before {
			t.Fatalf("failure before step %d (%s) left changes:\n%s", i+1, steps[i].Desc, sandbox.StateDiff(before, after))
		}
	}
}

// A failure inside a step, after its first of several kernel operations
// (the rename, each hardening write, link group then up, NAT mode's set-up
// then look-up), undoes that step's own part as well as the earlier
// steps: the kernel state, as ip, nft and /proc/sys print it, is as
// before.
func TestFailureInsideStepsLeavesNothing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mapped bool
	}{{"renamed and hardened", false}, {"NAT mode", true}} {
		t.Run(tc.name, func(t *testing.T) {
			sb := testsupport.New(t, sandbox.Options{})
			c, err := sb.AddClient(sandbox.ClientSpec{Domid: 31, IPv4: "10.137.0.31"})
			if err != nil {
				t.Fatal(err)
			}
			mac, _ := net.ParseMAC(c.Spec.MAC)
			dir := t.TempDir()
			in := &Inputs{
				Action: Online, Vif: c.Vif, Name: "qvif31", Domid: 31, Metric: Metric(31),
				Addrs:   []netip.Addr{netip.MustParseAddr("10.137.0.31")},
				MAC:     mac,
				VifType: "vif",
				Gateway: netip.MustParseAddr("10.138.0.1"),
				Harden:  true,
			}
			if tc.mapped {
				in.Name = c.Vif
				in.Mapped = &Mapping{VisibleIP: netip.MustParseAddr("10.137.0.200"), VisibleGateway: netip.MustParseAddr("10.138.0.200")}
			}
			opts := Options{
				HooksDir:      filepath.Join(dir, "hooks"),
				HardeningConf: filepath.Join(dir, "absent.conf"),
				LockPath:      filepath.Join(dir, "lock"),
				ProcSys:       "/proc/sys",
				LinkWait:      time.Second,
			}
			steps := Steps(in, opts)
			log := quiet
			before, err := sb.NetVM.KernelState()
			if err != nil {
				t.Fatal(err)
			}
			// run applies the plan, failing at the n-th checkpoint inside a
			// step (never with n = 0), and returns the checkpoints reached.
			run := func(n int) (reached []string, err error) {
				err = sb.NetVM.Do(func() error {
					k, err := NewKernel(context.Background(), log, opts)
					if err != nil {
						return err
					}
					defer k.Close()
					k.inside = func(op string) error {
						reached = append(reached, op)
						if len(reached) == n {
							return errInjected
						}
						return nil
					}
					// A last step that fails undoes a complete run.
					all := append(slices.Clone(steps), Step{Desc: "fail at the end", Do: func(*Kernel) (func() error, error) { return nil, errInjected }})
					_, err = Apply(context.Background(), k, all, Rollback, nil)
					return err
				})
				return reached, err
			}
			points, err := run(0)
			if !errors.Is(err, errInjected) {
				t.Fatalf("complete run: %v", err)
			}
			want := []string{"before link up"}
			if tc.mapped {
				want = append(want, "after NAT set-up")
			} else {
				want = append(want, "after rename", "harden ")
			}
			for _, w := range want {
				if !slices.ContainsFunc(points, func(p string) bool { return strings.HasPrefix(p, w) }) {
					t.Fatalf("no checkpoint %q reached; reached %v", w, points)
				}
			}
			for n := 1; n <= len(points); n++ {
				if _, err := run(n); !errors.Is(err, errInjected) {
					t.Fatalf("failure at %s: got %v", points[n-1], err)
				}
				after, err := sb.NetVM.KernelState()
				if err != nil {
					t.Fatal(err)
				}
				if after != before {
					t.Fatalf("failure inside a step at %q left changes:\n%s", points[n-1], sandbox.StateDiff(before, after))
				}
			}
		})
	}
}
