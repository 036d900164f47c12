package dns

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLockTimesOutNamingThePath: a run that cannot get the lock within
// its bound fails with an error naming the lock file, and gets it once the
// holder is gone.
func TestLockTimesOutNamingThePath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "lock")
	log := slog.New(slog.DiscardHandler)
	unlock, err := lock(context.Background(), path, time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	// flock locks belong to the open file, so a second open conflicts
	// even within one process.
	if _, err := lock(context.Background(), path, 50*time.Millisecond, log); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("second lock: %v; want a timeout naming %s", err, path)
	}
	unlock()
	again, err := lock(context.Background(), path, time.Second, log)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
