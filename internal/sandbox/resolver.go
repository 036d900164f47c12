package sandbox

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// resolverStartTimeout bounds how long StartResolver waits for dnsmasq to
// answer its first query.
const resolverStartTimeout = 10 * time.Second

// resolver is a dnsmasq process in the upstream namespace.
type resolver struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd has been waited for
	dir    string
}

// StartResolver runs a DNS server in the upstream namespace listening only
// on addr (an IPv4 or IPv6 address; added to the upstream's loopback if
// missing), UDP and TCP port 53. It answers whoami.test with Whoami(addr)
// (and, for an IPv6 server, AAAA addr) and host.test with InternetHost,
// and nothing else. It returns once the server answers.
func (s *Sandbox) StartResolver(addr string) error {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Zone() != "" || ip.Is4In6() {
		return fmt.Errorf("start resolver: %q is not an IPv4 or IPv6 address", addr)
	}
	whoami := "--host-record=whoami.test," + Whoami(addr)
	if ip.Is6() {
		whoami += "," + addr
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("start resolver %s: sandbox %s is closed", addr, s.ID)
	}
	if _, running := s.resolvers[addr]; running {
		return fmt.Errorf("start resolver %s: already running", addr)
	}
	if err := s.Upstream.IPBatch(fmt.Sprintf("addr replace %s/%d dev lo", addr, ip.BitLen())); err != nil {
		return fmt.Errorf("start resolver %s: %w", addr, err)
	}
	dir := filepath.Join(s.dir, "dnsmasq-"+addr)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("start resolver %s: %w", addr, err)
	}
	logPath := filepath.Join(dir, "log")
	cmd := exec.Command("ip", "netns", "exec", s.Upstream.Name, "dnsmasq",
		"--conf-file=/dev/null", // ignore the host's configuration
		"--keep-in-foreground",
		"--no-resolv",
		"--no-hosts",
		"--bind-interfaces",
		"--listen-address="+addr,
		"--port=53",
		"--user=root", // keeps access to the pid and log files
		"--pid-file="+filepath.Join(dir, "pid"),
		"--log-facility="+logPath,
		"--log-queries",
		whoami,
		"--host-record=host.test,"+InternetHost,
	)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start resolver %s: %w", addr, err)
	}
	r := &resolver{cmd: cmd, exited: make(chan struct{}), dir: dir}
	go func() {
		_ = cmd.Wait() // killed by stop; an early exit is reported below
		close(r.exited)
	}()
	if err := r.awaitAnswer(s.Upstream, addr); err != nil {
		r.stop()
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("start resolver %s: %w; dnsmasq log: %s", addr, err, log)
	}
	s.resolvers[addr] = r
	return nil
}

// Whoami returns the A record a resolver StartResolver ran on addr gives
// for whoami.test, which tells which resolver answered: an IPv4 resolver's
// own address; for an IPv6 one 192.0.2.N (TEST-NET-1, no resolver's
// address), N the last byte of its address, since Query reads A records.
func Whoami(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Is4() {
		return addr
	}
	b := ip.As16()
	return netip.AddrFrom4([4]byte{192, 0, 2, b[15]}).String()
}

// awaitAnswer polls until the resolver answers whoami.test correctly.
func (r *resolver) awaitAnswer(from *NS, addr string) error {
	deadline := time.Now().Add(resolverStartTimeout)
	for {
		answer, err := Query(from, addr, "whoami.test", false)
		if err == nil && answer == Whoami(addr) {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("answered %s, want %s", answer, Whoami(addr))
		}
		select {
		case <-r.exited:
			return fmt.Errorf("dnsmasq exited: %s", r.cmd.ProcessState)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %s: %w", resolverStartTimeout, err)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a wait for an event
	}
}

// StopResolver stops the DNS server StartResolver started on addr.
func (s *Sandbox) StopResolver(addr string) error {
	s.mu.Lock()
	r, running := s.resolvers[addr]
	delete(s.resolvers, addr)
	s.mu.Unlock()
	if !running {
		return fmt.Errorf("stop resolver %s: not running", addr)
	}
	r.stop()
	if err := os.RemoveAll(r.dir); err != nil {
		return fmt.Errorf("stop resolver %s: %w", addr, err)
	}
	return nil
}

// stop kills the process and waits until it has been reaped.
func (r *resolver) stop() {
	_ = r.cmd.Process.Kill() // fails only for a process already gone, which is the aim
	<-r.exited
}
