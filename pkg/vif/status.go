package vif

import (
	"fmt"
	"strings"

	"github.com/qubes-netvm/qnet/pkg/xenstore"
)

// The keys the toolstack watches under the device's XenStore directory.
const (
	StatusKey = "hotplug-status"
	ErrorKey  = "hotplug-error"
)

// reportConnected tells the toolstack the device is ready.
func reportConnected(xs *xenstore.Client, xenbusPath string) error {
	p := key(xenbusPath, StatusKey)
	if err := xs.Write(p, []byte("connected")); err != nil {
		return fmt.Errorf("write XenStore %s: %w", p, err)
	}
	return nil
}

// reportError records a failure the way xen-hotplug-common.sh's fatal does:
// the one-line message and status "error" in one transaction, so the
// toolstack never sees the status without its reason. It writes through a
// connection of its own, opened by dial: the run's connection may be the
// cause of the failure, and after a request on it timed out the client
// refuses every later request, which would leave the toolstack waiting for
// a status that never comes.
func reportError(dial func() (*xenstore.Client, error), xenbusPath, msg string) error {
	xs, err := dial()
	if err != nil {
		return fmt.Errorf("write XenStore %s: %w", key(xenbusPath, StatusKey), err)
	}
	defer xs.Close()
	msg = strings.Join(strings.Fields(msg), " ")
	err = xs.Transaction(func(tx *xenstore.Tx) error {
		if err := tx.Write(key(xenbusPath, ErrorKey), []byte(msg)); err != nil {
			return err
		}
		return tx.Write(key(xenbusPath, StatusKey), []byte("error"))
	})
	if err != nil {
		return fmt.Errorf("write XenStore %s and %s: %w", key(xenbusPath, ErrorKey), StatusKey, err)
	}
	return nil
}

func key(xenbusPath, k string) string { return strings.TrimSuffix(xenbusPath, "/") + "/" + k }
