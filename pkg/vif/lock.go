package vif

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// lockPoll is how often a waiting run retries a vif lock held by another.
const lockPoll = 20 * time.Millisecond

// lockVif serialises whole hotplug runs of one vif: a retried or duplicated
// hotplug (two onlines, or two offlines, started together) then ends as one
// run would, the second finding the first's work done. The lock is the file
// <dir>/<vif>.lock (dir is created if missing); it is released when unlock
// is called or the process exits. A run that finds it held logs that it
// waits and gives up after wait with an error naming the vif and the lock.
// Lock files are never removed: unlinking one while another run waits on it
// would let a third lock a new file beside it.
func lockVif(dir, vif string, wait time.Duration, log *slog.Logger) (unlock func(), err error) {
	// A bad name is refused before any file is made for it.
	if _, err := VifDomid(vif); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, vif+".lock")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", vif, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: open %s: %w", vif, path, err)
	}
	deadline := time.Now().Add(wait)
	for logged := false; ; {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %s: %w", vif, path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another run for %s still holds %s after %s: giving up", vif, path, wait)
		}
		if !logged {
			log.Info("another run for this vif is in progress; waiting for it", "lock", path, "up_to", wait)
			logged = true
		}
		time.Sleep(lockPoll)
	}
}
