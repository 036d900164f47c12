package vif

import (
	"fmt"

	"github.com/qubes-netvm/qnet/pkg/vif/natns"
)

// natMode moves the vif behind a private namespace that rewrites the
// client's visible address to its real one; the veth end left in the netvm
// under the vif's name then gets the routed-mode steps. IPv6 is not
// supported in this mode (as upstream): the planner drops IPv6 addresses.
func natMode(in *Inputs) Step {
	spec := in.natSpec()
	return Step{
		Change: Change{Kind: NATMode, Object: in.Name, Addr: in.Mapped.VisibleIP, Value: spec.RealIP.String()},
		Desc: fmt.Sprintf("NAT mode: move %s into namespace %s; the client's %s appears as %s (gateway %s)",
			in.Name, natns.NamespaceName(in.Name), in.Mapped.VisibleIP, spec.RealIP, in.Mapped.VisibleGateway),
		Do: func(k *Kernel) (func() error, error) {
			undo, err := natns.Setup(spec)
			if err != nil {
				return nil, err
			}
			if err := k.checkpoint("after NAT set-up"); err != nil {
				return undo, err
			}
			// From here on the vif's name is the veth end in the netvm,
			// which has IPv6 disabled.
			if k.facts.Link, err = k.nl.LinkByName(in.Name); err != nil {
				return undo, fmt.Errorf("look up %s after NAT set-up: %w", in.Name, err)
			}
			k.facts.IPv6 = false
			return undo, nil
		},
	}
}

// natTeardown removes the vif's private namespace if it has one, whatever
// QubesDB says now: a mapping removed while the client ran must not leave
// the namespace behind.
func natTeardown(name string) Step {
	return Step{
		Change: Change{Kind: RemoveNAT, Object: natns.NamespaceName(name)},
		Desc:   fmt.Sprintf("remove namespace %s (if present)", natns.NamespaceName(name)),
		Do:     func(*Kernel) (func() error, error) { return nil, natns.Teardown(name) },
	}
}

func (in *Inputs) natSpec() natns.Spec {
	real, _ := in.firstIPv4()
	return natns.Spec{
		Vif:            in.Name,
		ClientMAC:      in.MAC,
		RealIP:         real,
		VisibleIP:      in.Mapped.VisibleIP,
		VisibleGateway: in.Mapped.VisibleGateway,
		Gateway:        in.Gateway,
	}
}
