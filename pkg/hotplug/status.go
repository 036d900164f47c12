package hotplug

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

// ReportConnected tells the toolstack the device is ready.
func ReportConnected(xs *xenstore.Client, xenbusPath string) error {
	p := key(xenbusPath, StatusKey)
	if err := xs.Write(p, []byte("connected")); err != nil {
		return fmt.Errorf("write XenStore %s: %w", p, err)
	}
	return nil
}

// ReportError records a failure the way xen-hotplug-common.sh's fatal does:
// the one-line message and status "error" in one transaction, so the
// toolstack never sees the status without its reason.
func ReportError(xs *xenstore.Client, xenbusPath, msg string) error {
	msg = strings.Join(strings.Fields(msg), " ")
	err := xs.Transaction(func(tx *xenstore.Tx) error {
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
