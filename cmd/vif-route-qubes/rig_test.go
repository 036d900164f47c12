package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// binary is the vif-route-qubes built once for the whole test run, so the
// tests drive the real program exactly as Xen's toolstack does.
var binary string

func TestMain(m *testing.M) {
	testsupport.Main(m, testsupport.Build{Name: "vif-route-qubes", Package: ".", Path: &binary})
}

// rig is a netvm sandbox with fake XenStore and QubesDB daemons, and the
// paths a hotplug run uses, all private to one test.
type rig struct {
	t        testing.TB
	sb       *sandbox.Sandbox
	xs       *fakexs.Server
	db       *fakeqdb.Server
	dir      string
	hooksDir string
	hardConf string
}

const (
	backIPv4 = "10.138.0.1"
	backIPv6 = "fd09:24ef:4179::a8a:1"
)

func newRig(t testing.TB, opts sandbox.Options) *rig {
	t.Helper()
	sb := testsupport.New(t, opts)
	dir := t.TempDir()
	xs, err := fakexs.Start(filepath.Join(dir, "xenstored.sock"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xs.Close() })
	db, err := fakeqdb.Start(filepath.Join(dir, "qubesdb.sock"), map[string]string{
		"/qubes-netvm-gateway":       backIPv4,
		"/qubes-netvm-primary-dns":   "10.139.1.1",
		"/qubes-netvm-secondary-dns": "10.139.1.2",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &rig{t: t, sb: sb, xs: xs, db: db, dir: dir,
		hooksDir: filepath.Join(dir, "hooks"), hardConf: filepath.Join(dir, "81-qubes.conf.optional")}
	if err := os.Mkdir(r.hooksDir, 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

func xenbusPath(domid, devid int) string {
	return fmt.Sprintf("/local/domain/0/backend/vif/%d/%d", domid, devid)
}

// client adds a client qube and the XenStore directory Xen would give its
// vif. ip is the XenStore ip value (space-separated).
func (r *rig) client(spec sandbox.ClientSpec, ip string) *sandbox.Client {
	r.t.Helper()
	c, err := r.sb.AddClient(spec)
	if err != nil {
		r.t.Fatal(err)
	}
	p := xenbusPath(spec.Domid, spec.Devid)
	if ip != "" {
		r.xs.Set(p+"/ip", ip)
	}
	r.xs.Set(p+"/mac", c.Spec.MAC)
	r.xs.Set(p+"/type", "vif")
	return c
}

type result struct {
	code   int
	stdout string
	stderr string
}

// direct prepares the binary with Xen's environment for the vif (plus
// extra variables) and argv, to run in the caller's network namespace.
func (r *rig) direct(vif string, domid, devid int, extraEnv []string, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{
		"--hooks-dir", r.hooksDir, "--hardening-conf", r.hardConf,
		"--lock-file", filepath.Join(r.dir, "vif-route.lock"), "--link-wait", "3s", "--timeout", "1s",
		"--lock-dir", filepath.Join(r.dir, "locks"), "--hotplug-log="}, args...)...)
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"vif=" + vif,
		"XENBUS_PATH=" + xenbusPath(domid, devid),
		"XENBUS_TYPE=vif",
		"XENBUS_BASE_PATH=backend",
		"script=/etc/xen/scripts/vif-route-qubes",
		"netdev=",
		"XENSTORED_PATH=" + filepath.Join(r.dir, "xenstored.sock"),
		"QUBESDB_SOCKET=" + filepath.Join(r.dir, "qubesdb.sock"),
	}, extraEnv...)
	return cmd
}

// startIn starts cmd from a thread inside the netvm namespace, so the
// process runs there with the host's mount namespace, as a hotplug script
// does in a real netvm. (`ip netns exec` would give it a private mount
// namespace, and the bind mount NAT mode makes for its namespace would
// vanish with the process.)
func (r *rig) startIn(cmd *exec.Cmd) error {
	return r.sb.NetVM.Do(cmd.Start)
}

// start runs the binary in the background; the caller reads its standard
// error and waits for it.
func (r *rig) start(vif string, domid, devid int, args ...string) (*exec.Cmd, io.Reader) {
	r.t.Helper()
	cmd := r.direct(vif, domid, devid, nil, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	if err := r.startIn(cmd); err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = cmd.Process.Kill() })
	return cmd, stderr
}

// hotplug runs the binary to completion.
func (r *rig) hotplug(vif string, domid, devid int, extraEnv []string, args ...string) result {
	r.t.Helper()
	cmd := r.direct(vif, domid, devid, extraEnv, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := r.startIn(cmd)
	if err == nil {
		err = cmd.Wait()
	}
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		res.code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatalf("run vif-route-qubes: %v", err)
	}
	return res
}

func (r *rig) mustHotplug(vif string, domid, devid int, args ...string) result {
	r.t.Helper()
	res := r.hotplug(vif, domid, devid, nil, args...)
	if res.code != 0 {
		r.t.Fatalf("vif-route-qubes %v for %s: exit %d\nstderr:\n%s", args, vif, res.code, res.stderr)
	}
	return res
}

// route is the part of `ip -j route` output the tests compare.
type route struct {
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
	Metric   int    `json:"metric"`
}

func (r *rig) routes(family, dev string) []route {
	r.t.Helper()
	var rs []route
	if err := r.sb.NetVM.IPJSON(&rs, family, "-d", "route", "show", "dev", dev); err != nil {
		r.t.Fatal(err)
	}
	// `ip route show dev X` leaves dev out of each entry; put it back.
	for i := range rs {
		rs[i].Dev = dev
	}
	return rs
}

type neighbour struct {
	Dst    string   `json:"dst"`
	Lladdr string   `json:"lladdr"`
	State  []string `json:"state"`
}

func (r *rig) neighbours(dev string) []neighbour {
	r.t.Helper()
	var ns []neighbour
	if err := r.sb.NetVM.IPJSON(&ns, "neigh", "show", "dev", dev); err != nil {
		r.t.Fatal(err)
	}
	sort.Slice(ns, func(i, j int) bool { return ns[i].Dst < ns[j].Dst })
	return ns
}

type addrInfo struct {
	Local     string `json:"local"`
	Prefixlen int    `json:"prefixlen"`
	Scope     string `json:"scope"`
	Family    string `json:"family"`
}

type link struct {
	Ifname   string         `json:"ifname"`
	Flags    []string       `json:"flags"`
	Group    string         `json:"group"`
	AddrInfo []addrInfo     `json:"addr_info"`
	Other    map[string]any `json:"-"`
}

func (r *rig) link(dev string) (link, bool) {
	r.t.Helper()
	var ls []link
	out, err := r.sb.NetVM.Exec("ip", "-j", "addr", "show")
	if err != nil {
		r.t.Fatal(err)
	}
	if err := json.Unmarshal(out, &ls); err != nil {
		r.t.Fatalf("decode ip -j addr: %v", err)
	}
	for _, l := range ls {
		if l.Ifname == dev {
			return l, true
		}
	}
	return link{}, false
}

// globalAddrs lists a link's addresses other than link-local ones.
func (l link) globalAddrs() []string {
	var out []string
	for _, a := range l.AddrInfo {
		if a.Scope != "link" {
			out = append(out, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen))
		}
	}
	sort.Strings(out)
	return out
}

func (r *rig) elements(family, set string) []string {
	r.t.Helper()
	els, err := r.sb.NetVM.SetElements(family, "qubes", set)
	if err != nil {
		r.t.Fatal(err)
	}
	return els
}

func (r *rig) sysctl(key string) string {
	r.t.Helper()
	v, err := r.sb.NetVM.Sysctl(key)
	if err != nil {
		r.t.Fatal(err)
	}
	return v
}

// snapshot captures the netvm's kernel state as independent tools print it.
func (r *rig) snapshot() string {
	r.t.Helper()
	state, err := r.sb.NetVM.KernelState()
	if err != nil {
		r.t.Fatal(err)
	}
	return state
}

func (r *rig) requireUnchanged(before string) {
	r.t.Helper()
	if after := r.snapshot(); before != after {
		r.t.Fatalf("kernel state changed:\n%s", sandbox.StateDiff(before, after))
	}
}

func (r *rig) linkGroup(dev string) string {
	r.t.Helper()
	var ls []struct {
		Group string `json:"group"`
	}
	if err := r.sb.NetVM.IPJSON(&ls, "link", "show", "dev", dev); err != nil {
		r.t.Fatal(err)
	}
	if len(ls) != 1 {
		r.t.Fatalf("ip -j link show dev %s: %d links", dev, len(ls))
	}
	return ls[0].Group
}

// ping sends pings from a namespace (extra ping arguments first, target last)
// and fails the test unless a reply comes back.
func ping(t *testing.T, ns *sandbox.NS, args ...string) {
	t.Helper()
	if out, err := ns.Exec("ping", append([]string{"-c", "1", "-i", "0.2", "-w", "5"}, args...)...); err != nil {
		t.Fatalf("ping %v from %s: %v\n%s", args, ns.Name, err, out)
	}
}

// noPing fails the test if a ping gets a reply.
func noPing(t *testing.T, ns *sandbox.NS, args ...string) {
	t.Helper()
	if out, err := ns.Exec("ping", append([]string{"-c", "1", "-W", "1"}, args...)...); err == nil {
		t.Fatalf("ping %v from %s got a reply, want none:\n%s", args, ns.Name, out)
	}
}

// writeHook installs an executable hook that appends its name and
// arguments (joined by |) to log.
func writeHook(t *testing.T, dir, name, log string) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\nprintf '%%s %%s|%%s|%%s|%%s\\n' %s \"$1\" \"$2\" \"$3\" \"$4\" >> %s\n", name, log)
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}
