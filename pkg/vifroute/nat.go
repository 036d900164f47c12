package vifroute

import "fmt"

// natModeSteps moves the vif behind a private namespace that rewrites the
// client's visible address to its real one.
func natModeSteps(in *Inputs) []Step {
	return []Step{{
		Desc: fmt.Sprintf("NAT mode: client sees %s via %s", in.Mapped.VisibleIP, in.Mapped.VisibleGateway),
		Do: func(*Kernel) (func() error, error) {
			return nil, fmt.Errorf("NAT mode (QubesDB /mapped-ip/…/visible-ip %s) is not supported yet", in.Mapped.VisibleIP)
		},
	}}
}

func natModeOffline(*Inputs) []Step { return nil }
