package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// captureStartTimeout bounds how long StartCapture waits for tcpdump to
// report that it listens.
const captureStartTimeout = 10 * time.Second

// Capture is a tcpdump running on one interface of a namespace.
type Capture struct {
	cmd    *exec.Cmd
	stderr *bufio.Reader
	what   string

	mu     sync.Mutex
	stdout bytes.Buffer // written by exec's copying goroutine
}

// Write collects tcpdump's output.
func (c *Capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stdout.Write(p)
}

// Seen returns one line per packet captured so far, as tcpdump prints
// them; tests wait on it for the packets they expect before calling Stop.
func (c *Capture) Seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var lines []string
	for _, line := range strings.Split(c.stdout.String(), "\n") {
		if line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// StartCapture runs tcpdump on iface inside the namespace with a pcap
// filter (e.g. "port 53") and returns once it captures. Stop ends it and
// returns what it saw.
func (n *NS) StartCapture(iface, filter string) (*Capture, error) {
	c := &Capture{what: fmt.Sprintf("tcpdump on %s in %s (%s)", iface, n.Name, filter)}
	// -Z root: stay root (the VM tier has no tcpdump user); -l: line-buffered;
	// -n: no name lookups; -U: write each packet at once.
	c.cmd = exec.Command("ip", "netns", "exec", n.Name, "tcpdump", "-Z", "root", "-i", iface, "-n", "-l", "-U", filter)
	c.cmd.Stdout = c
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", c.what, err)
	}
	c.stderr = bufio.NewReader(stderr)
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.what, err)
	}
	ready := make(chan error, 1)
	go func() {
		for {
			line, err := c.stderr.ReadString('\n')
			if strings.Contains(line, "listening on") {
				ready <- nil
				return
			}
			if err != nil {
				ready <- fmt.Errorf("tcpdump ended before listening: %w (last line %q)", err, line)
				return
			}
		}
	}()
	select {
	case err = <-ready:
	case <-time.After(captureStartTimeout):
		err = fmt.Errorf("tcpdump not listening within %v", captureStartTimeout)
	}
	if err != nil {
		_ = c.cmd.Process.Kill()
		_ = c.cmd.Wait()
		return nil, fmt.Errorf("start %s: %w", c.what, err)
	}
	return c, nil
}

// Stop ends the capture and returns what Seen returns then.
func (c *Capture) Stop() ([]string, error) {
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil {
		return nil, fmt.Errorf("stop %s: %w", c.what, err)
	}
	// The rest of stderr (packet counts) is not needed but must be
	// drained for tcpdump to exit.
	go func() { _, _ = c.stderr.WriteTo(io.Discard) }()
	if err := c.cmd.Wait(); err != nil {
		return nil, fmt.Errorf("stop %s: %w", c.what, err)
	}
	return c.Seen(), nil
}
