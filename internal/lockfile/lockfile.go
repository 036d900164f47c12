// Package lockfile serialises runs of the tools across processes with an
// exclusive flock(2) on a file under /run. The kernel drops the lock when
// its holder exits, so a crashed run never blocks the next one. Lock files
// are never removed: unlinking one while another process waits on it
// would let a third lock a new file beside it.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// poll is how often a waiting run retries a lock held by another.
const poll = 10 * time.Millisecond

// ErrHeld means another run still held the lock when the wait ran out.
var ErrHeld = errors.New("another run still holds it")

// Acquire takes the lock on path, creating the file and its directory. It
// waits at most wait for another holder to let go (wait 0: one try),
// calling waiting once when it has to wait, and gives up early when ctx
// ends. Calling release, or exiting, lets go of the lock.
func Acquire(ctx context.Context, path string, wait time.Duration, waiting func()) (release func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(wait)
	for tries := 0; ; tries++ {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing the last descriptor unlocks
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !time.Now().Before(deadline) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w after %v", path, ErrHeld, wait)
		}
		if tries == 0 && waiting != nil {
			waiting()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, ctx.Err())
		case <-time.After(poll):
		}
	}
}
