//go:build vmtest

package vmtest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// hotplugRig is a sandbox network qube with client qubes and fake
// XenStore and QubesDB daemons, in which the built bin/vif-route-qubes
// runs as Xen runs it.
type hotplugRig struct {
	t       *testing.T
	s       *sandbox.Sandbox
	bin     string
	dir     string
	clients map[int]*sandbox.Client
}

func newHotplugRig(t *testing.T, domids ...int) *hotplugRig {
	t.Helper()
	bin, err := filepath.Abs("../bin/vif-route-qubes")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the built binary is missing (run make build): %v", err)
	}
	r := &hotplugRig{t: t, s: testsupport.New(t, sandbox.Options{}), bin: bin, dir: t.TempDir(), clients: map[int]*sandbox.Client{}}
	qdb, err := fakeqdb.Start(filepath.Join(r.dir, "qubesdb.sock"), map[string]string{
		"/qubes-netvm-gateway":       sandbox.DefaultGateway,
		"/qubes-netvm-primary-dns":   "10.139.1.1",
		"/qubes-netvm-secondary-dns": "10.139.1.2",
	})
	if err != nil {
		t.Fatalf("start fake QubesDB: %v", err)
	}
	t.Cleanup(func() { qdb.Close() })
	xenstore := map[string]string{}
	for _, domid := range domids {
		r.clients[domid] = addClient(t, r.s, domid)
		base := fmt.Sprintf("/local/domain/0/backend/vif/%d/0", domid)
		xenstore[base+"/ip"] = r.clients[domid].Spec.IPv4
		xenstore[base+"/mac"] = r.clients[domid].Spec.MAC
		xenstore[base+"/type"] = "vif"
	}
	xs, err := fakexs.Start(filepath.Join(r.dir, "xenstore.sock"), xenstore)
	if err != nil {
		t.Fatalf("start fake XenStore: %v", err)
	}
	t.Cleanup(func() { xs.Close() })
	return r
}

// hotplug runs `vif-route-qubes command` for the client's vif and fails
// the test if it fails.
func (r *hotplugRig) hotplug(command string, domid int) {
	r.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", r.s.NetVM.Name, r.bin, "-v", command, "type_if=vif")
	cmd.Env = append(os.Environ(),
		"vif="+r.clients[domid].Vif,
		fmt.Sprintf("XENBUS_PATH=/local/domain/0/backend/vif/%d/0", domid),
		"XENSTORED_PATH="+filepath.Join(r.dir, "xenstore.sock"),
		"QUBESDB_SOCKET="+filepath.Join(r.dir, "qubesdb.sock"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("vif-route-qubes %s for %s: %v\n%s", command, r.clients[domid].Vif, err, out)
	}
	r.t.Logf("vif-route-qubes %s for %s:\n%s", command, r.clients[domid].Vif, out)
}

// monitor is `nft monitor` running in the network qube.
type monitor struct {
	t      *testing.T
	ns     *sandbox.NS
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	marker int
	pos    int // in out, just after the last marker seen
}

func (m *monitor) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.out.Write(bytes.ReplaceAll(p, []byte("\r"), nil))
	return len(p), err
}

func (m *monitor) text() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.out.String()
}

func startMonitor(t *testing.T, ns *sandbox.NS) *monitor {
	t.Helper()
	m := &monitor{t: t, ns: ns}
	// nft buffers its output when it is not a terminal: give it one.
	master, tty := openPTY(t)
	m.cmd = exec.Command("ip", "netns", "exec", ns.Name, "nft", "monitor")
	m.cmd.Stdout, m.cmd.Stderr = tty, tty
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start nft monitor: %v", err)
	}
	tty.Close()
	go io.Copy(m, master)
	t.Cleanup(func() { _ = m.cmd.Process.Kill(); _ = m.cmd.Wait(); master.Close() })
	// The monitor has subscribed once a marker made after its start shows;
	// markers made before that are never printed, so keep making them.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, ok := m.tryMark(500 * time.Millisecond); ok {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("nft monitor printed no marker within 30s; it printed:\n%s", m.text())
		}
	}
}

// openPTY returns a pseudo-terminal's master and its terminal, mounting
// devpts first if the VM's /init did not.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	if _, err := os.Stat("/dev/pts/ptmx"); err != nil {
		if err := os.MkdirAll("/dev/pts", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("devpts", "/dev/pts", "devpts", 0, "ptmxmode=0666"); err != nil {
			t.Fatalf("mount devpts: %v", err)
		}
	}
	master, err := os.OpenFile("/dev/pts/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("pty number: %v", err)
	}
	tty, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open pty %d: %v", n, err)
	}
	return master, tty
}

// mark adds a marker table and waits until the monitor has printed it:
// every event before it has been printed too. It returns the monitor's
// output since the previous mark.
func (m *monitor) mark() string {
	m.t.Helper()
	events, ok := m.tryMark(10 * time.Second)
	if !ok {
		m.t.Fatalf("nft monitor did not print marker %d; it printed:\n%s", m.marker, m.text())
	}
	return events
}

func (m *monitor) tryMark(wait time.Duration) (string, bool) {
	m.t.Helper()
	start := m.pos
	m.marker++
	name := fmt.Sprintf("qnt-mark-%d", m.marker)
	if out, err := m.ns.Exec("nft", "add", "table", "ip", name); err != nil {
		m.t.Fatalf("nft add table %s: %v\n%s", name, err, out)
	}
	line := "add table ip " + name + "\n"
	deadline := time.Now().Add(wait)
	for !strings.Contains(m.text()[start:], line) {
		if time.Now().After(deadline) {
			return "", false
		}
		time.Sleep(20 * time.Millisecond) // poll interval
	}
	events := m.text()[start:]
	end := strings.Index(events, line)
	m.pos = start + end + len(line)
	return events[:end], true
}

// generations counts the transactions among events that nft itself (the
// markers, the test's own changes) did not make.
func generations(events string) int {
	n := 0
	for _, l := range linesStarting(events, "# new generation") {
		if !strings.HasSuffix(strings.TrimSpace(l), "(nft)") {
			n++
		}
	}
	return n
}

func linesStarting(events, prefix string) []string {
	var found []string
	for _, l := range strings.Split(events, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), prefix) {
			found = append(found, l)
		}
	}
	return found
}

// TestOnlineSendsOnlyAdditionsOfflineOneTransaction watches nftables with
// `nft monitor` on the stock kernel, which has flowtables: the first
// online (creating table inet qubes-nat-accel) and a second one (adding
// its vif to the flowtable) make no delete event, so the kernel waits for
// no RCU grace period; offline's deletions (set elements and the vif's
// flowtable device, which `nft list` shows gone) come in exactly one
// transaction.
func TestOnlineSendsOnlyAdditionsOfflineOneTransaction(t *testing.T) {
	r := newHotplugRig(t, 7, 8)
	m := startMonitor(t, r.s.NetVM)

	r.hotplug("online", 7)
	first := m.mark()
	// The second vif must be new to the flowtable: delete it (by hand,
	// before watching) as a vif created after the first online would be.
	if out, err := r.s.NetVM.Exec("nft", "delete", "flowtable", "inet", "qubes-nat-accel", "qubes-accel", "{", "devices", "=", "{", r.clients[8].Vif, "}", ";", "}"); err != nil {
		t.Fatalf("take %s out of the flowtable: %v\n%s", r.clients[8].Vif, err, out)
	}
	m.mark()
	r.hotplug("online", 8)
	second := m.mark()
	checkAccelTable(t, r.s.NetVM, "eth0", "lo", r.clients[7].Vif, r.clients[8].Vif)
	r.hotplug("offline", 8)
	offline := m.mark()
	checkAccelTable(t, r.s.NetVM, "eth0", "lo", r.clients[7].Vif)

	for _, run := range []struct{ name, events string }{{"first online", first}, {"second online", second}} {
		t.Logf("%s, nft monitor:\n%s", run.name, run.events)
		if d := linesStarting(run.events, "delete"); len(d) > 0 {
			t.Errorf("%s made delete events:\n%s", run.name, strings.Join(d, "\n"))
		}
		if generations(run.events) == 0 || len(linesStarting(run.events, "add")) == 0 {
			t.Errorf("%s: no transaction seen (is nft monitor printing generations?)", run.name)
		}
	}
	// nft 1.0.6 prints no flowtable events, so the flowtable's changes
	// show as transactions of their own without lines; the device lists
	// are checked above. The old table replacement would print "delete
	// table inet qubes-nat-accel".
	if !strings.Contains(first, "add table inet qubes-nat-accel") {
		t.Errorf("the first online did not create the table:\n%s", first)
	}
	if n := generations(second); n != 2 {
		t.Errorf("second online made %d transactions, want 2 (elements, flowtable device)", n)
	}
	t.Logf("offline, nft monitor:\n%s", offline)
	if n := generations(offline); n != 1 {
		t.Errorf("offline made %d transactions, want 1", n)
	}
	if len(linesStarting(offline, "delete element")) != 2 {
		t.Errorf("offline's transaction lacks the element deletions:\n%s", offline)
	}
}
