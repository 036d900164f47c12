package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/pkg/qubesdb/qubesdbfake"
	"github.com/qubes-netvm/qnet/pkg/sandbox"
	"github.com/qubes-netvm/qnet/pkg/xenstore/xenstorefake"
)

// The network qube's view of itself as QubesDB tells it (CONTRACT.md 1).
const (
	backIPv4     = sandbox.DefaultGateway
	backIPv6     = "fd09:24ef:4179::a8a:1"
	primaryDNS   = "10.139.1.1"
	secondaryDNS = "10.139.1.2"
)

// pingTimeout bounds how long a client may need before its first ping
// through the network qube is answered.
const pingTimeout = 5 * time.Second

// handoffFD is the pipe to the front process (its ExtraFiles[0]).
const handoffFD = 3

// clientPlan is one client qube of the demo.
type clientPlan struct {
	label string
	spec  sandbox.ClientSpec
	// xenIPs is XenStore's ip value: the addresses the network qube
	// routes (for a NAT-mode client, its real address, not the one it
	// knows).
	xenIPs []string
	// visibleIP is set for a NAT-mode client: the only address it knows.
	visibleIP string
	pings     []string
	// spoofs are source addresses the client has no right to.
	spoofs []string
}

func (p clientPlan) natNamespace() string {
	if p.visibleIP == "" {
		return ""
	}
	return fmt.Sprintf("vif%d.%d%s", p.spec.Domid, p.spec.Devid, natSuffix)
}

// demoClients: dual stack, IPv4 only, and NAT mode (the client knows
// 10.137.0.213 behind gateway 10.138.0.213; the network qube routes its
// real 10.137.0.13). Domain 13 makes the global namespace vif13.0-nat.
var demoClients = []clientPlan{
	{
		label:  "dual stack",
		spec:   sandbox.ClientSpec{Domid: 11, IPv4: "10.137.0.11", IPv6: "fd09:24ef:4179::a89:b", Gateway6: backIPv6},
		xenIPs: []string{"10.137.0.11", "fd09:24ef:4179::a89:b"},
		pings:  []string{sandbox.InternetHost, sandbox.InternetHost6},
		spoofs: []string{"10.137.0.99", "fd09:24ef:4179::a89:63"},
	},
	{
		label:  "IPv4 only",
		spec:   sandbox.ClientSpec{Domid: 12, IPv4: "10.137.0.12"},
		xenIPs: []string{"10.137.0.12"},
		pings:  []string{sandbox.InternetHost},
		spoofs: []string{"10.137.0.98"},
	},
	{
		label:     "NAT mode",
		spec:      sandbox.ClientSpec{Domid: 13, IPv4: "10.137.0.213", Gateway: "10.138.0.213"},
		xenIPs:    []string{"10.137.0.13"},
		visibleIP: "10.137.0.213",
		pings:     []string{sandbox.InternetHost},
	},
}

type client struct {
	clientPlan
	*sandbox.Client
	xenbusPath string
}

// demo is one run of the owner process.
type demo struct {
	ctx    context.Context
	opts   options
	out    io.Writer
	failed bool

	state      runState
	sb         *sandbox.Sandbox
	xs         *xenstorefake.Server
	db         *qubesdbfake.Server
	clients    []*client
	resolvConf string
	// baseline is the network qube before any hotplug.
	baseline snapshot
}

func runOwner(opts options) int {
	// A closed terminal or pipe (`make demo | head`) must not kill the
	// owner before it has removed the sandbox: writes then just fail.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	if dir, err := filepath.Abs(opts.binDir); err == nil {
		opts.binDir = dir
	}
	pid := os.Getpid()
	d := &demo{ctx: ctx, opts: opts, out: os.Stdout, state: runState{
		OwnerPID: pid,
		Dir:      filepath.Join(stateRoot, fmt.Sprint(pid)),
		Kept:     opts.keep,
	}}
	return d.run()
}

func (d *demo) run() int {
	if err := os.MkdirAll(filepath.Join(d.state.Dir, "hooks"), 0o755); err != nil {
		fmt.Fprintf(d.out, "✗ demo: %v\n", err)
		return 1
	}
	if err := d.state.write(); err != nil {
		fmt.Fprintf(d.out, "✗ demo: %v\n", err)
		_ = d.state.remove()
		return 1
	}
	fmt.Fprintln(d.out, "qnet demo: a Qubes network qube in network namespaces, driven exactly as Xen and NetworkManager drive it")

	steps := []func() error{d.setUp, d.dnsFirst, d.online, d.traffic, d.dnsChange}
	if !d.opts.keep {
		steps = append(steps, d.offline)
	}
	for _, step := range steps {
		if d.ctx.Err() != nil {
			break
		}
		if err := step(); err != nil {
			break
		}
	}
	if d.ctx.Err() != nil {
		fmt.Fprintln(d.out, "✗ interrupted: removing everything")
		d.failed = true
	}
	if d.opts.keep && d.ctx.Err() == nil {
		return d.keepUp()
	}
	d.cleanUp()
	return d.exitCode()
}

func (d *demo) exitCode() int {
	switch {
	case d.ctx.Err() != nil:
		return 130
	case d.failed:
		return 1
	}
	return 0
}

// step prints a step's verdict line and its indented details.
func (d *demo) step(ok bool, headline string, details ...string) {
	mark := "✓"
	if !ok {
		mark = "✗"
		d.failed = true
	}
	fmt.Fprintf(d.out, "%s %s\n", mark, headline)
	for _, l := range details {
		fmt.Fprintf(d.out, "      %s\n", l)
	}
}

// fail prints a failed step and returns its error, which stops the demo.
func (d *demo) fail(headline string, err error) error {
	d.step(false, headline+": "+err.Error())
	return err
}

// 1. The sandbox, the resolvers, the fakes and the clients.
func (d *demo) setUp() error {
	const title = "1 sandbox"
	sb, err := sandbox.New(sandbox.Options{})
	if err != nil {
		return d.fail(title, err)
	}
	d.sb = sb
	d.state.Sandbox = sb.ID
	d.state.Namespaces = []string{sb.NetVM.Name, sb.Upstream.Name}
	for _, addr := range []string{sandbox.Resolver1, sandbox.Resolver2} {
		if err := sb.StartResolver(addr); err != nil {
			return d.fail(title, err)
		}
	}
	if d.state.ResolverPIDs, err = nsPIDs(sb.Upstream); err != nil {
		return d.fail(title, err)
	}

	xsSocket, dbSocket := filepath.Join(d.state.Dir, "xenstored.sock"), filepath.Join(d.state.Dir, "qubesdb.sock")
	d.state.Sockets = []string{xsSocket, dbSocket}
	if d.xs, err = xenstorefake.Start(xsSocket, nil); err != nil {
		return d.fail(title, err)
	}
	qdb := map[string]string{
		"/qubes-netvm-gateway":       backIPv4,
		"/qubes-netvm-gateway6":      backIPv6,
		"/qubes-netvm-primary-dns":   primaryDNS,
		"/qubes-netvm-secondary-dns": secondaryDNS,
	}
	var clientLines []string
	for _, plan := range demoClients {
		c, err := sb.AddClient(plan.spec)
		if err != nil {
			return d.fail(title, err)
		}
		cl := &client{clientPlan: plan, Client: c,
			xenbusPath: fmt.Sprintf("/local/domain/0/backend/vif/%d/%d", plan.spec.Domid, plan.spec.Devid)}
		d.clients = append(d.clients, cl)
		d.state.Namespaces = append(d.state.Namespaces, c.NS.Name)
		if ns := plan.natNamespace(); ns != "" {
			d.state.Namespaces = append(d.state.Namespaces, ns)
		}
		d.xs.Set(cl.xenbusPath+"/ip", strings.Join(plan.xenIPs, " "))
		d.xs.Set(cl.xenbusPath+"/mac", c.Spec.MAC)
		d.xs.Set(cl.xenbusPath+"/type", "vif")
		line := fmt.Sprintf("%s %-10s %s, namespace %s", c.Vif, plan.label, strings.Join(plan.xenIPs, " "), c.NS.Name)
		if plan.visibleIP != "" {
			qdb["/mapped-ip/"+plan.xenIPs[0]+"/visible-ip"] = plan.visibleIP
			qdb["/mapped-ip/"+plan.xenIPs[0]+"/visible-gateway"] = plan.spec.Gateway
			line = fmt.Sprintf("%s %-10s real %s, visible %s via %s, namespace %s", c.Vif, plan.label,
				plan.xenIPs[0], plan.visibleIP, plan.spec.Gateway, c.NS.Name)
		}
		clientLines = append(clientLines, line)
	}
	if d.db, err = qubesdbfake.Start(dbSocket, qdb); err != nil {
		return d.fail(title, err)
	}
	if err := d.state.write(); err != nil {
		return d.fail(title, err)
	}
	d.step(true, fmt.Sprintf("%s: netvm %s (base ruleset), upstream %s, %d clients", title, sb.NetVM.Name, sb.Upstream.Name, len(d.clients)),
		append([]string{
			fmt.Sprintf("upstream: router %s, internet host %s / %s, dnsmasq on %s and %s (pids %v)",
				sandbox.UpstreamAddr, sandbox.InternetHost, sandbox.InternetHost6, sandbox.Resolver1, sandbox.Resolver2, d.state.ResolverPIDs),
			fmt.Sprintf("QubesDB %s: gateway %s / %s, DNS %s %s", dbSocket, backIPv4, backIPv6, primaryDNS, secondaryDNS),
			fmt.Sprintf("XenStore %s: ip, mac, type of each vif", xsSocket),
		}, clientLines...)...)
	return nil
}

// 2. The uplink's DNS server appears; the dispatcher runs the DNS tool.
func (d *demo) dnsFirst() error {
	const title = "2 DNS"
	d.resolvConf = filepath.Join(d.state.Dir, "resolv.conf")
	baseline, err := takeSnapshot(d.sb.NetVM)
	if err != nil {
		return d.fail(title, err)
	}
	d.baseline = baseline
	res, err := d.setDNS(sandbox.Resolver1)
	if err != nil {
		return d.fail(title, err)
	}
	rules, err := dnatRules(d.sb.NetVM)
	if err != nil {
		return d.fail(title, err)
	}
	d.step(res.code == 0, fmt.Sprintf("%s: resolv.conf nameserver %s; qubes-setup-dnat-to-ns exit %d (want 0) in %s; chain ip qubes dnat-dns:",
		title, sandbox.Resolver1, res.code, ms(res.took)), append(rules, d.logLines(res, res.code != 0)...)...)
	return nil
}

// setDNS rewrites the uplink's resolv.conf and runs the DNS tool.
func (d *demo) setDNS(server string) (result, error) {
	if err := os.WriteFile(d.resolvConf, []byte("# written by the qnet demo as the uplink's DHCP would\nnameserver "+server+"\n"), 0o644); err != nil {
		return result{}, fmt.Errorf("write %s: %w", d.resolvConf, err)
	}
	return d.runDNSTool()
}

// runDNSTool runs qubes-setup-dnat-to-ns as NetworkManager's dispatcher
// hook does (no arguments), pointed at the demo's resolv.conf, with no
// D-Bus system bus so systemd-resolved is not asked.
func (d *demo) runDNSTool() (result, error) {
	args := []string{"--resolv-conf", d.resolvConf, "--qubes-firewall-flag", filepath.Join(d.state.Dir, "qubes-firewall-enabled")}
	return d.runInNetVM("qubes-setup-dnat-to-ns", args, []string{
		"QUBESDB_SOCKET=" + d.state.Sockets[1],
		"DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent",
	})
}

// 3. Xen brings each vif online.
func (d *demo) online() error {
	for _, c := range d.clients {
		res, diff, err := d.hotplug(c, "online")
		if err != nil {
			return d.fail("3 online "+c.Vif, err)
		}
		status, _ := d.xs.Get(c.xenbusPath + "/hotplug-status")
		ok := res.code == 0 && status == "connected"
		d.step(ok, fmt.Sprintf("3 online %s (%s): exit %d, hotplug-status %q, %s; the netvm changed:",
			c.Vif, c.label, res.code, status, ms(res.took)), append(diff, d.logLines(res, !ok)...)...)
		if !ok {
			return errors.New("online failed")
		}
	}
	return nil
}

// hotplug runs vif-route-qubes as Xen's toolstack does and returns what it
// changed in the network qube.
func (d *demo) hotplug(c *client, command string) (result, []string, error) {
	before, err := takeSnapshot(d.sb.NetVM)
	if err != nil {
		return result{}, nil, err
	}
	res, err := d.runInNetVM("vif-route-qubes",
		[]string{"--lock-file", filepath.Join(d.state.Dir, "vif-route.lock"), "--hooks-dir", filepath.Join(d.state.Dir, "hooks"), command, "type_if=vif"},
		[]string{
			"vif=" + c.Vif,
			"XENBUS_PATH=" + c.xenbusPath,
			"XENBUS_TYPE=vif",
			"XENBUS_BASE_PATH=backend",
			"script=/etc/xen/scripts/vif-route-qubes",
			"netdev=",
			"XENSTORED_PATH=" + d.state.Sockets[0],
			"QUBESDB_SOCKET=" + d.state.Sockets[1],
		})
	if err != nil {
		return res, nil, err
	}
	after, err := takeSnapshot(d.sb.NetVM)
	if err != nil {
		return res, nil, err
	}
	return res, changes(before, after), nil
}

// 4. Real traffic from every client.
func (d *demo) traffic() error {
	for _, c := range d.clients {
		var parts, problems []string
		ok := true
		for _, target := range c.pings {
			if err := awaitPing(d.ctx, c.NS, target); err != nil {
				ok = false
				problems = append(problems, err.Error())
				parts = append(parts, "ping "+target+" ✗")
				continue
			}
			parts = append(parts, "ping "+target+" ✓")
		}
		for _, tcp := range []bool{false, true} {
			proto := map[bool]string{false: "UDP", true: "TCP"}[tcp]
			got, err := sandbox.Query(c.NS, primaryDNS, "whoami.test", tcp)
			if err != nil || got != sandbox.Resolver1 {
				ok = false
				problems = append(problems, fmt.Sprintf("whoami.test via %s %s: %q %v, want %s", primaryDNS, proto, got, err, sandbox.Resolver1))
			}
			parts = append(parts, fmt.Sprintf("whoami.test via %s/%s → %s", primaryDNS, proto, got))
		}
		for _, source := range c.spoofs {
			dropped, err := d.spoofDropped(c, source)
			if err != nil || !dropped {
				ok = false
				problems = append(problems, fmt.Sprintf("spoofed source %s: dropped=%v %v", source, dropped, err))
				continue
			}
			parts = append(parts, "spoofed "+source+" dropped")
		}
		d.step(ok, fmt.Sprintf("4 traffic from %s: %s", c.Vif, strings.Join(parts, ", ")), problems...)
	}
	return nil
}

// spoofDropped gives the client a second address it has no right to,
// pings from it and tells whether the network qube's antispoof chain
// dropped the packet (and no reply came).
func (d *demo) spoofDropped(c *client, source string) (bool, error) {
	family, prefix, extra := "ip", "/32", []string(nil)
	if strings.Contains(source, ":") {
		family, prefix, extra = "ip6", "/128", []string{"nodad"}
	}
	if _, err := c.NS.Exec("ip", append([]string{"addr", "add", source + prefix, "dev", "eth0"}, extra...)...); err != nil {
		return false, err
	}
	defer func() { _, _ = c.NS.Exec("ip", "addr", "del", source+prefix, "dev", "eth0") }()
	before, err := d.sb.NetVM.AntispoofDrops(family)
	if err != nil {
		return false, err
	}
	target := sandbox.InternetHost
	if family == "ip6" {
		target = sandbox.InternetHost6
	}
	_, pingErr := c.NS.Exec("ping", "-c1", "-W1", "-I", source, target)
	after, err := d.sb.NetVM.AntispoofDrops(family)
	if err != nil {
		return false, err
	}
	return pingErr != nil && after > before, nil
}

// 5. The uplink's DNS server changes; resolution follows.
func (d *demo) dnsChange() error {
	const title = "5 DNS change"
	res, err := d.setDNS(sandbox.Resolver2)
	if err != nil {
		return d.fail(title, err)
	}
	ok := res.code == 0
	var answers, problems []string
	for _, c := range d.clients {
		for _, tcp := range []bool{false, true} {
			got, err := sandbox.Query(c.NS, primaryDNS, "whoami.test", tcp)
			if err != nil || got != sandbox.Resolver2 {
				ok = false
				problems = append(problems, fmt.Sprintf("%s tcp=%v: %q %v, want %s", c.Vif, tcp, got, err, sandbox.Resolver2))
			}
		}
		answers = append(answers, c.Vif)
	}
	again, err := d.runDNSTool()
	if err != nil {
		return d.fail(title, err)
	}
	ok = ok && again.code == 100
	rules, err := dnatRules(d.sb.NetVM)
	if err != nil {
		return d.fail(title, err)
	}
	details := append(rules, problems...)
	details = append(details, d.logLines(res, res.code != 0)...)
	details = append(details, d.logLines(again, again.code != 100)...)
	d.step(ok, fmt.Sprintf("%s: resolv.conf nameserver %s; qubes-setup-dnat-to-ns exit %d (want 0) in %s; whoami.test via %s from %s (UDP, TCP) → %s; run again: exit %d (want 100, unchanged)",
		title, sandbox.Resolver2, res.code, ms(res.took), primaryDNS, strings.Join(answers, ", "), sandbox.Resolver2, again.code), details...)
	return nil
}

// 6. Xen takes each vif offline; the network qube is clean again.
func (d *demo) offline() error {
	for _, c := range d.clients {
		res, diff, err := d.hotplug(c, "offline")
		if err != nil {
			return d.fail("6 offline "+c.Vif, err)
		}
		d.step(res.code == 0, fmt.Sprintf("6 offline %s: exit %d, %s; the netvm changed:", c.Vif, res.code, ms(res.took)),
			append(diff, d.logLines(res, res.code != 0)...)...)
	}
	now, err := takeSnapshot(d.sb.NetVM)
	if err != nil {
		return d.fail("6 netvm clean", err)
	}
	left := changes(d.baseline.withoutLinks(), now.withoutLinks())
	d.step(len(left) == 0, "6 netvm clean: no route, neighbour, address, set element or namespace of any vif left (as before step 3)", left...)
	return nil
}

// keepUp leaves the sandbox running, prints how to explore and remove it,
// hands the exit code to the front process and serves the fakes until
// told to stop; then it removes everything.
func (d *demo) keepUp() int {
	c1, c2 := d.clients[0], d.clients[1]
	netvm := d.sb.NetVM.Name
	lines := []string{
		"The sandbox stays up; process " + fmt.Sprint(d.state.OwnerPID) + " serves the fake XenStore and QubesDB. Explore it:",
		"  ip netns exec " + netvm + " nft list ruleset",
		"  ip -n " + netvm + " route; ip -n " + netvm + " -6 route; ip -n " + netvm + " neigh",
		"  ip netns exec " + c1.NS.Name + " ping -c1 " + sandbox.InternetHost6,
		"  ip netns exec " + c2.NS.Name + " dig +short @" + primaryDNS + " whoami.test",
		"  XENSTORED_PATH=" + d.state.Sockets[0] + " xenstore-read " + c1.xenbusPath + "/hotplug-status",
		"  ip netns list | grep " + d.sb.ID,
		"Remove it: make demo-clean   (state: " + statePath(d.state.OwnerPID) + ")",
	}
	fmt.Fprintln(d.out, strings.Join(lines, "\n"))
	code := d.exitCode()
	detach(code)
	<-d.ctx.Done()
	d.out = io.Discard
	d.cleanUp()
	return 0
}

// detach stops writing to the caller's terminal or pipe, stops following
// the front process's death, and hands it the exit code.
func detach(code int) {
	if devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		_ = unix.Dup2(int(devnull.Fd()), 1)
		_ = unix.Dup2(int(devnull.Fd()), 2)
		devnull.Close()
	}
	_ = unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	handoff := os.NewFile(handoffFD, "handoff")
	fmt.Fprintf(handoff, "%s %d\n", keptWord, code)
	handoff.Close()
}

// 7. Remove everything and check that nothing is left.
func (d *demo) cleanUp() {
	var errs []error
	if d.xs != nil {
		errs = append(errs, d.xs.Close())
	}
	if d.db != nil {
		errs = append(errs, d.db.Close())
	}
	existing, err := natNamespaces()
	errs = append(errs, err)
	for _, c := range d.clients {
		if ns := c.natNamespace(); ns != "" && slices.Contains(existing, ns) {
			errs = append(errs, deleteNamespace(ns))
		}
	}
	if d.sb != nil {
		errs = append(errs, d.sb.Close())
	}
	errs = append(errs, d.state.remove())

	var left []string
	for _, name := range d.state.Namespaces {
		if _, err := os.Stat(filepath.Join("/run/netns", name)); err == nil {
			left = append(left, "namespace "+name)
		}
	}
	for _, pid := range d.state.ResolverPIDs {
		if !waitGone(pid, ownerStopTimeout) {
			left = append(left, fmt.Sprintf("dnsmasq %d", pid))
		}
	}
	if _, err := os.Stat(d.state.Dir); err == nil {
		left = append(left, d.state.Dir)
	}
	if err := errors.Join(errs...); err != nil {
		left = append(left, err.Error())
	}
	d.step(len(left) == 0, fmt.Sprintf("7 cleanup: %d namespaces, %d resolvers, the fakes and %s removed",
		len(d.state.Namespaces), len(d.state.ResolverPIDs), d.state.Dir), left...)
}

// result is how one run of a project binary went.
type result struct {
	code   int
	took   time.Duration // wall time of the process
	stderr string
}

// runInNetVM runs one of the project's binaries inside the network qube.
// It is started from a thread in the netvm's namespace, so it runs there
// with the host's mount namespace, as a hotplug script does in a real
// network qube (`ip netns exec` would give it a private mount namespace,
// and NAT mode's namespace bind mount would vanish with it).
func (d *demo) runInNetVM(binary string, args, env []string) (result, error) {
	if d.opts.verbose {
		args = append([]string{"--verbose"}, args...)
	}
	path := filepath.Join(d.opts.binDir, binary)
	cmd := exec.Command(path, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	err := d.sb.NetVM.Do(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	res := result{took: time.Since(start), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	case err != nil:
		return res, fmt.Errorf("run %s: %w", path, err)
	}
	return res, nil
}

// logLines are a binary's log lines to show: with --verbose always, else
// only when its run went wrong.
func (d *demo) logLines(res result, wrong bool) []string {
	if !d.opts.verbose && !wrong {
		return nil
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(res.stderr), "\n") {
		if l != "" {
			lines = append(lines, "| "+l)
		}
	}
	return lines
}

// awaitPing pings target from ns until a reply comes, for at most
// pingTimeout.
func awaitPing(ctx context.Context, ns *sandbox.NS, target string) error {
	deadline := time.Now().Add(pingTimeout)
	for {
		_, err := ns.Exec("ping", "-c1", "-W1", target)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("no reply to ping %s from %s within %s: %w", target, ns.Name, pingTimeout, err)
		}
	}
}

// nsPIDs lists the processes inside a namespace.
func nsPIDs(ns *sandbox.NS) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns.Name).Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns pids %s: %w", ns.Name, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func ms(d time.Duration) string {
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}
