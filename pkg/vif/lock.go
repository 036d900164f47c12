package vif

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/qubes-netvm/qnet/internal/lockfile"
)

// lockVif serialises whole hotplug runs of one vif: a retried or duplicated
// hotplug (two onlines, or two offlines, started together) then ends as one
// run would, the second finding the first's work done. The lock is the file
// <dir>/<vif>.lock; a run that finds it held logs that it waits and gives
// up after wait with an error naming the vif and the lock.
func lockVif(ctx context.Context, dir, vif string, wait time.Duration, log *slog.Logger) (unlock func(), err error) {
	// A bad name is refused before any file is made for it.
	if _, err := VifDomid(vif); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, vif+".lock")
	unlock, err = lockfile.Acquire(ctx, path, wait, func() {
		log.Info("another run for this vif is in progress; waiting for it", "lock", path, "up_to", wait)
	})
	if err != nil {
		return nil, fmt.Errorf("vif %s: %w", vif, err)
	}
	return unlock, nil
}
