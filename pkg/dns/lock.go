package dns

import (
	"context"
	"log/slog"
	"time"

	"github.com/qubes-netvm/qnet/internal/lockfile"
)

// lock serialises whole runs (read inputs, compare, replace) on path,
// waiting at most timeout for another run, and returns the function that
// releases it.
func lock(ctx context.Context, path string, timeout time.Duration, log *slog.Logger) (func(), error) {
	return lockfile.Acquire(ctx, path, timeout, func() {
		log.Debug("waiting for another run to finish", "lock", path)
	})
}
