package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/qubes-netvm/qnet/pkg/sandbox"
)

// stateRoot holds one state file and one working directory per demo run.
const stateRoot = "/run/qnet-demo"

// ownerStopTimeout bounds how long --clean waits for a kept owner to tear
// its sandbox down after SIGTERM before killing it.
const ownerStopTimeout = 30 * time.Second

// runState is what a demo run leaves in its state file, so --clean can
// find and remove it even when the owner died without cleaning up.
type runState struct {
	OwnerPID   int      `json:"owner_pid"` // serves the fake XenStore and QubesDB
	Sandbox    string   `json:"sandbox"`
	Namespaces []string `json:"namespaces"`
	Dir        string   `json:"dir"` // sockets, resolv.conf, lock file, hooks
	Sockets    []string `json:"sockets"`
	// ResolverPIDs are the dnsmasq processes in the upstream namespace.
	ResolverPIDs []int `json:"resolver_pids"`
	Kept         bool  `json:"kept"`
}

func statePath(pid int) string {
	return filepath.Join(stateRoot, fmt.Sprintf("%d.json", pid))
}

func (s *runState) write() error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("encode demo state: %w", err)
	}
	path := statePath(s.OwnerPID)
	if err := os.WriteFile(path+".tmp", append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write demo state: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return fmt.Errorf("write demo state: %w", err)
	}
	return nil
}

// remove deletes the run's files, and the state root once it is empty.
func (s *runState) remove() error {
	var errs []error
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", s.Dir, err))
	}
	if err := os.Remove(statePath(s.OwnerPID)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove demo state: %w", err))
	}
	_ = os.Remove(stateRoot) // fails while another run's files are there, which is fine
	return errors.Join(errs...)
}

// clean removes what kept (or crashed) demo runs left: it asks each live
// owner to tear its sandbox down, kills it if it does not, then removes
// whatever is still there. It returns the process exit code.
func clean(out io.Writer) int {
	paths, err := filepath.Glob(filepath.Join(stateRoot, "*.json"))
	if err != nil || len(paths) == 0 {
		fmt.Fprintln(out, "✓ nothing to clean: no demo state under "+stateRoot)
		_ = os.Remove(stateRoot)
		return 0
	}
	code := 0
	for _, path := range paths {
		if err := cleanRun(path); err != nil {
			fmt.Fprintf(out, "✗ clean %s: %v\n", path, err)
			code = 1
			continue
		}
		fmt.Fprintf(out, "✓ removed the demo sandbox of %s\n", path)
	}
	return code
}

func cleanRun(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read demo state: %w", err)
	}
	var st runState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("decode demo state %s: %w", path, err)
	}
	switch {
	case isOwner(st.OwnerPID):
		if err := stopOwner(st.OwnerPID); err != nil {
			return err
		}
	case isZombie(st.OwnerPID):
		// A killed owner not yet reaped still counts as alive for the
		// leftover sweep.
		waitGone(st.OwnerPID, ownerStopTimeout)
	}
	var errs []error
	// The owner is gone, so its namespaces are a dead run's leftovers,
	// dnsmasq included; the sweep spares every live run.
	errs = append(errs, sandbox.RemoveLeftovers())
	for _, name := range st.Namespaces {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err != nil {
			continue
		}
		if strings.HasSuffix(name, natSuffix) {
			errs = append(errs, deleteNamespace(name))
			continue
		}
		errs = append(errs, fmt.Errorf("namespace %s survived the leftover sweep", name))
	}
	if st.Sandbox != "" {
		// The sandbox's temporary files, which only its Close removes.
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), st.Sandbox+"-*"))
		for _, dir := range dirs {
			if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove %s: %w", dir, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w (state file kept for another try)", err)
	}
	return st.remove()
}

// isOwner tells whether pid is a demo owner process (and not an unrelated
// process that reused the PID).
func isOwner(pid int) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := bytes.Split(cmdline, []byte{0})
	return len(args) > 1 && string(args[1]) == ownerCommand
}

func stopOwner(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop demo owner %d: %w", pid, err)
	}
	if waitGone(pid, ownerStopTimeout) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !waitGone(pid, ownerStopTimeout) {
		return fmt.Errorf("demo owner %d survived SIGKILL", pid)
	}
	return nil
}

// waitGone polls until pid no longer exists, not even as a zombie (the
// sandbox's leftover sweep counts a zombie as alive).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
}

// isZombie tells whether pid has exited and awaits reaping: the state field
// of /proc/<pid>/stat, after the parenthesised command name, is Z.
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, state, found := strings.Cut(string(stat), ") ")
	return found && strings.HasPrefix(state, "Z")
}

// deleteNamespace removes a namespace the sandbox package does not own
// (NAT mode's <vif>-nat), which holds no process.
func deleteNamespace(name string) error {
	if out, err := exec.Command("ip", "netns", "delete", name).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %w: %s", name, err, strings.TrimSpace(string(out)))
	}
	return nil
}
