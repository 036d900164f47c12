// Package nsthread runs code on an OS thread whose network namespace that
// code may switch, and puts the thread back afterwards. Network namespaces
// belong to threads, not processes: a Go goroutine that switched one must
// keep its thread locked, and a thread that cannot be switched back must
// never run other goroutines, so it is left locked and dies with its
// goroutine.
package nsthread

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Run calls fn on a fresh locked thread and restores that thread's
// original network namespace when fn returns, whatever fn did to it.
func Run(fn func() error) error {
	result := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			result <- fmt.Errorf("open the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			result <- errors.Join(fnErr, fmt.Errorf("return the thread to its network namespace: %w", err))
			return
		}
		runtime.UnlockOSThread()
		result <- fnErr
	}()
	return <-result
}

// In calls fn on a locked thread inside the namespace target.
func In(target netns.NsHandle, fn func() error) error {
	return Run(func() error {
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter network namespace: %w", err)
		}
		return fn()
	})
}
