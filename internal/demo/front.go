package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
)

// keptWord starts the line the owner writes on the handoff pipe when it
// stays up after the demo (--keep); the demo's exit code follows.
const keptWord = "kept"

// runFront starts the owner process and returns its verdict: its exit code
// or, when it keeps the sandbox up, the code it hands over before
// detaching. Ctrl-C and termination are passed on to the owner, which
// cleans up; if this process is killed outright, the kernel sends the
// owner SIGTERM (parent-death signal) with the same effect.
func runFront(opts options) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: find own executable: %v\n", err)
		return 1
	}
	handoffR, handoffW, err := os.Pipe()
	if err != nil {
		fmt.Fprintf(os.Stderr, "demo: create handoff pipe: %v\n", err)
		return 1
	}
	args := []string{ownerCommand, "--bin-dir", opts.binDir}
	if opts.keep {
		args = append(args, "--keep")
	}
	if opts.verbose {
		args = append(args, "--verbose")
	}
	owner := exec.Command(self, args...)
	owner.Stdout, owner.Stderr = os.Stdout, os.Stderr
	owner.ExtraFiles = []*os.File{handoffW} // fd 3 in the owner
	// A session of its own keeps a kept owner out of the terminal's job
	// control and hang-ups; signals reach it only through this process.
	owner.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGTERM}

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(signals)
	if err := owner.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "demo: start %s %s: %v\n", self, ownerCommand, err)
		return 1
	}
	handoffW.Close()
	go func() {
		for sig := range signals {
			_ = owner.Process.Signal(sig) // fails only once the owner has exited
		}
	}()

	line, readErr := bufio.NewReader(handoffR).ReadString('\n')
	handoffR.Close()
	if fields := strings.Fields(line); readErr == nil && len(fields) == 2 && fields[0] == keptWord {
		n, err := strconv.Atoi(fields[1])
		if err != nil {
			fmt.Fprintf(os.Stderr, "demo: owner handed over %q: %v\n", line, err)
			return 1
		}
		return n
	}
	err = owner.Wait()
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		return exitErr.ExitCode()
	default:
		fmt.Fprintf(os.Stderr, "demo: owner process: %v\n", err)
		return 1
	}
}
