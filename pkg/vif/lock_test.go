package vif

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockVif(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	log := quiet
	unlock, err := lockVif(context.Background(), dir, "vif3.0", time.Second, log)
	if err != nil {
		t.Fatal(err)
	}
	// Another vif is independent.
	other, err := lockVif(context.Background(), dir, "vif4.0", 0, log)
	if err != nil {
		t.Fatalf("lock of another vif: %v", err)
	}
	other()
	// The same vif, held by another open file description, times out
	// with an error naming the vif and the lock file.
	_, err = lockVif(context.Background(), dir, "vif3.0", 50*time.Millisecond, log)
	if err == nil || !strings.Contains(err.Error(), "vif3.0") || !strings.Contains(err.Error(), filepath.Join(dir, "vif3.0.lock")) {
		t.Fatalf("second lock of vif3.0 = %v, want a timeout naming the vif and the lock", err)
	}
	unlock()
	again, err := lockVif(context.Background(), dir, "vif3.0", 0, log)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	again()
	for _, bad := range []string{"../x", "vif1.0;id"} {
		if _, err := lockVif(context.Background(), dir, bad, 0, log); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("lock of %s = %v, want a bad-name error", bad, err)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 {
		t.Errorf("lock directory holds %d files, want only vif3.0's and vif4.0's", len(entries))
	}
}
