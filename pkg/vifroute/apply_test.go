package vifroute

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/pkg/hotplug"
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
		Action: hotplug.Online, Vif: c.Vif, Name: c.Vif, Domid: 30, Metric: hotplug.Metric(30),
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
	steps := Plan(in, opts)
	// A last step that always fails proves that a complete run is undone too.
	steps = append(steps, Step{Desc: "fail at the end", Do: func(*Kernel) (func() error, error) { return nil, errInjected }})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

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
			return Apply(context.Background(), k, steps, true, func(j int, s Step) error {
				if j == i {
					return errInjected
				}
				return nil
			})
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
