// Package systembus gives tests a private system bus: a real dbus-daemon
// on a temporary socket, a fake systemd service manager that records the
// jobs it is asked for, and a socket that accepts connections but never
// answers.
package systembus

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=/nonexistent</listen>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// StartBus runs a private dbus-daemon configured like a system bus (no
// service activation) and returns its address. The daemon stops when the
// test ends. Tests point the code under test at it with
// t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address).
func StartBus(t testing.TB) string {
	t.Helper()
	daemon, err := exec.LookPath("dbus-daemon")
	if err != nil {
		t.Skip("dbus-daemon not installed (Debian package dbus): ", err)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "bus.conf")
	if err := os.WriteFile(conf, []byte(busConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config-file="+conf, "--address="+unixAddress(filepath.Join(dir, "bus.sock")),
		"--nofork", "--nopidfile", "--print-address=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start dbus-daemon: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// The daemon prints its address once it is listening.
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Wait()
		t.Fatalf("read dbus-daemon address: %v; its stderr: %s", err, stderr.Bytes())
	}
	return strings.TrimSpace(line)
}

// Connect opens a connection to the bus at address, closed when the test
// ends.
func Connect(t testing.TB, address string) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(address)
	if err != nil {
		t.Fatalf("connect to %s: %v", address, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Job is one request received by the fake service manager.
type Job struct {
	Method string // e.g. "ReloadOrTryRestartUnit"
	Unit   string
	Mode   string
}

// Manager is a fake org.freedesktop.systemd1 manager.
type Manager struct {
	jobs chan Job
}

// StartManager claims org.freedesktop.systemd1 on the bus at address and
// serves the job methods qnet uses.
func StartManager(t testing.TB, address string) *Manager {
	t.Helper()
	conn := Connect(t, address)
	m := &Manager{jobs: make(chan Job, 64)}
	if err := conn.Export(managerObject{m}, "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager"); err != nil {
		t.Fatal(err)
	}
	reply, err := conn.RequestName("org.freedesktop.systemd1", dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own org.freedesktop.systemd1: %v (reply %v)", err, reply)
	}
	return m
}

// NextJob waits up to timeout for the next request and reports whether one
// came.
func (m *Manager) NextJob(timeout time.Duration) (Job, bool) {
	select {
	case j := <-m.jobs:
		return j, true
	case <-time.After(timeout):
		return Job{}, false
	}
}

// PendingJobs returns the requests received and not yet taken.
func (m *Manager) PendingJobs() []Job {
	var jobs []Job
	for {
		select {
		case j := <-m.jobs:
			jobs = append(jobs, j)
		default:
			return jobs
		}
	}
}

type managerObject struct{ m *Manager }

func (o managerObject) queue(method, unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	o.m.jobs <- Job{Method: method, Unit: unit, Mode: mode}
	return "/org/freedesktop/systemd1/job/1", nil
}

func (o managerObject) ReloadOrTryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return o.queue("ReloadOrTryRestartUnit", unit, mode)
}

func (o managerObject) TryRestartUnit(unit, mode string) (dbus.ObjectPath, *dbus.Error) {
	return o.queue("TryRestartUnit", unit, mode)
}

// SilentBus listens on a fresh Unix socket, accepts every connection and
// never writes a byte, the way a wedged bus daemon behaves. It returns the
// socket's D-Bus address; everything closes when the test ends.
func SilentBus(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return unixAddress(path)
}

// unixAddress returns the D-Bus address of the Unix socket at path,
// escaping the bytes the address syntax reserves (test names put commas
// into temporary directory names).
func unixAddress(path string) string {
	var b strings.Builder
	b.WriteString("unix:path=")
	for _, c := range []byte(path) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_/.\\*", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02x", c)
		}
	}
	return b.String()
}
