package sysctl

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netns"
)

func TestKeyValidation(t *testing.T) {
	for _, key := range []string{"", "/net/ipv4/ip_forward", "net//x", "net/./x", "net/../../etc/passwd", "net/"} {
		if _, err := Read(key); err == nil {
			t.Errorf("Read(%q): no error", key)
		}
		if err := Write(key, "1"); err == nil || !strings.Contains(err.Error(), `"1"`) {
			t.Errorf("Write(%q, 1) = %v, want an error naming the value", key, err)
		}
	}
}

// TestReadWriteInNamespace writes a sysctl from a thread locked into a fresh
// network namespace and checks the change with a separate process in that
// namespace, so the host's own value is never touched.
func TestReadWriteInNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create a network namespace")
	}
	name := fmt.Sprintf("qnt%d-sysctl", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	const key = "net/ipv4/conf/lo/forwarding"
	readInNS := func() (string, error) {
		out, err := exec.Command("ip", "netns", "exec", name, "cat", "/proc/sys/"+key).Output()
		if err != nil {
			return "", fmt.Errorf("read %s in %s: %w", key, name, err)
		}
		return strings.TrimSpace(string(out)), nil
	}

	before, err := readInNS()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"0": "1", "1": "0"}[before]
	if want == "" {
		t.Fatalf("%s in a fresh namespace is %q, want 0 or 1", key, before)
	}

	// What each step saw, checked after the goroutine is done.
	type observed struct {
		read, seenByOther, restored, seenAfterRestore string
	}
	var obs observed
	done := make(chan error)
	// The namespace work runs on its own goroutine: if switching back
	// fails, the goroutine ends with its thread still locked, and the Go
	// runtime then discards that thread instead of reusing it.
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- fmt.Errorf("get current namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(name)
		if err != nil {
			done <- fmt.Errorf("open namespace %s: %w", name, err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			done <- fmt.Errorf("enter namespace %s: %w", name, err)
			return
		}
		stepErr := func() (err error) {
			if err = Write(key, want); err != nil {
				return err
			}
			if obs.read, err = Read(key); err != nil {
				return err
			}
			if obs.seenByOther, err = readInNS(); err != nil {
				return err
			}
			if err = Write(key, before); err != nil {
				return err
			}
			if obs.restored, err = Read(key); err != nil {
				return err
			}
			obs.seenAfterRestore, err = readInNS()
			return err
		}()
		if err := netns.Set(orig); err != nil {
			done <- fmt.Errorf("return to the original namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		done <- stepErr
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wantObs := observed{read: want, seenByOther: want, restored: before, seenAfterRestore: before}
	if obs != wantObs {
		t.Errorf("observed %+v, want %+v", obs, wantObs)
	}
}

// TestSkippable follows systemd-sysctl: a missing key and the permission
// errors are skipped, any other failure is not.
func TestSkippable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{&os.PathError{Op: "open", Path: "/proc/sys/net/ipv6/conf/all/accept_dad", Err: syscall.ENOENT}, true},
		{fmt.Errorf("write sysctl x: %w", syscall.EPERM), true},
		{fmt.Errorf("write sysctl x: %w", syscall.EACCES), true},
		{fmt.Errorf("write sysctl x: %w", syscall.EROFS), true},
		{fmt.Errorf("write sysctl x: %w", syscall.EINVAL), false},
		{fmt.Errorf("write sysctl x: %w", syscall.EIO), false},
		{nil, false},
	} {
		if got := Skippable(tc.err); got != tc.want {
			t.Errorf("Skippable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}
