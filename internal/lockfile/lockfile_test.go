package lockfile

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAcquire(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "x.lock")
	release, err := Acquire(context.Background(), path, 0, nil)
	if err != nil {
		t.Fatalf("first lock: %v", err)
	}
	// Another open file description of the same file is refused, after
	// saying once that it waits, with an error naming the path.
	waited := 0
	_, err = Acquire(context.Background(), path, 50*time.Millisecond, func() { waited++ })
	if !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), path) || waited != 1 {
		t.Fatalf("second lock = %v after %d waiting calls, want ErrHeld naming %s after one", err, waited, path)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Acquire(ctx, path, time.Minute, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("lock with a cancelled context = %v, want context.Canceled", err)
	}
	// Once released, a waiting run gets it.
	go func() { time.Sleep(30 * time.Millisecond); release() }()
	again, err := Acquire(context.Background(), path, 10*time.Second, nil)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}
