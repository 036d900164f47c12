package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	fakeqdb "github.com/qubes-netvm/qnet/internal/fake/qubesdb"
	fakexs "github.com/qubes-netvm/qnet/internal/fake/xenstore"
	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// demo is one run: the sandbox, the fake daemons and what the steps found.
type demo struct {
	ctx     context.Context
	opts    options
	clients []*client

	dir    string // sockets, resolv.conf, lock file, hooks: removed at exit even when kept
	sb     *sandbox.Sandbox
	xs     *fakexs.Server
	db     *fakeqdb.Server
	step   int  // number of the step running, for its verdict lines
	failed bool // a check failed
	// baseline is the network qube's kernel state before any vif existed.
	baseline string
}

// A step prints one or more verdict lines; an error stops the demo (the
// steps after it need what it failed to build).
type step struct {
	name string
	run  func() error
	// tearsDown marks the steps --keep skips: from the first of them on,
	// they undo what --keep leaves up.
	tearsDown bool
}

func (d *demo) steps() []step {
	return []step{
		{name: "sandbox", run: d.setUp},
		{name: "DNS", run: d.dnsFirst},
		{name: "online", run: d.online},
		{name: "traffic", run: d.traffic},
		{name: "DNS change", run: d.dnsChange},
		{name: "IPv6 DNS", run: d.dns6},
		// A new step goes here, with its function below: it gets the next
		// number, and the tests require its ✓ like every other step's.
		{name: "offline", run: d.offline, tearsDown: true},
	}
}

func (d *demo) run() int {
	fmt.Println("qnet demo: a Qubes network qube in network namespaces, driven exactly as Xen and NetworkManager drive it")
	var err error
	if d.dir, err = os.MkdirTemp("", "qnet-demo-"); err == nil {
		err = os.Mkdir(filepath.Join(d.dir, "hooks"), 0o755)
	}
	if err != nil {
		fmt.Printf("✗ demo: %v\n", err)
		return 1
	}
	steps := d.steps()
	stopped := false // a step could not finish: there is nothing whole to keep
	for i, s := range steps {
		if d.ctx.Err() != nil || (d.opts.keep && s.tearsDown) {
			break
		}
		d.step = i + 1
		if err := s.run(); err != nil {
			d.check(false, s.name, err.Error())
			stopped = true
			break
		}
	}
	interrupted := d.ctx.Err() != nil
	if interrupted {
		fmt.Println("✗ interrupted: removing everything")
		d.failed = true
	}
	if d.opts.keep && !interrupted && !stopped {
		d.keep()
	} else {
		d.step = len(steps) + 1
		d.cleanUp()
	}
	switch {
	case interrupted:
		return 130
	case d.failed:
		return 1
	}
	return 0
}

// check prints a verdict line of the current step and its details.
func (d *demo) check(ok bool, headline string, details ...string) {
	mark := "✓"
	if !ok {
		mark = "✗"
		d.failed = true
	}
	fmt.Printf("%s %d %s\n", mark, d.step, headline)
	for _, l := range details {
		fmt.Printf("      %s\n", l)
	}
}

// setUp builds the sandbox, its two resolvers, the fake XenStore and
// QubesDB, and the client qubes (their vifs come in the online step).
func (d *demo) setUp() error {
	var err error
	if d.sb, err = sandbox.New(sandbox.Options{Keep: d.opts.keep}); err != nil {
		return err
	}
	for _, addr := range []string{sandbox.Resolver1, sandbox.Resolver2} {
		if err := d.sb.StartResolver(addr); err != nil {
			return err
		}
	}
	if d.xs, err = fakexs.Start(d.xenstoreSocket(), nil); err != nil {
		return err
	}
	qdb := map[string]string{
		"/qubes-netvm-gateway":       backIPv4,
		"/qubes-netvm-gateway6":      backIPv6,
		"/qubes-netvm-primary-dns":   primaryDNS,
		"/qubes-netvm-secondary-dns": secondaryDNS,
	}
	details := []string{
		fmt.Sprintf("upstream %s: router %s, internet host %s / %s, dnsmasq on %s and %s",
			d.sb.Upstream.Name, sandbox.UpstreamAddr, sandbox.InternetHost, sandbox.InternetHost6, sandbox.Resolver1, sandbox.Resolver2),
		fmt.Sprintf("QubesDB: gateway %s / %s, DNS %s %s", backIPv4, backIPv6, primaryDNS, secondaryDNS),
	}
	for _, c := range d.clients {
		if c.Client, err = d.sb.AddClient(c.spec); err != nil {
			return err
		}
		c.xenbusPath = fmt.Sprintf("/local/domain/0/backend/vif/%d/%d", c.spec.Domid, c.spec.Devid)
		d.xs.Set(c.xenbusPath+"/ip", strings.Join(c.xenIPs, " "))
		d.xs.Set(c.xenbusPath+"/mac", c.Spec.MAC)
		d.xs.Set(c.xenbusPath+"/type", "vif")
		line := fmt.Sprintf("%s %-10s %s, namespace %s", c.Vif, c.label, strings.Join(c.xenIPs, " "), c.NS.Name)
		if c.visibleIP != "" {
			qdb["/mapped-ip/"+c.xenIPs[0]+"/visible-ip"] = c.visibleIP
			qdb["/mapped-ip/"+c.xenIPs[0]+"/visible-gateway"] = c.spec.Gateway
			line = fmt.Sprintf("%s %-10s real %s, visible %s via %s, namespace %s", c.Vif, c.label,
				c.xenIPs[0], c.visibleIP, c.spec.Gateway, c.NS.Name)
		}
		details = append(details, line)
	}
	if d.db, err = fakeqdb.Start(d.qubesdbSocket(), qdb); err != nil {
		return err
	}
	d.check(true, fmt.Sprintf("sandbox: netvm %s with the base ruleset, %d clients", d.sb.NetVM.Name, len(d.clients)), details...)
	return nil
}

// dnsFirst: the uplink's DNS server appears; the dispatcher runs the DNS
// tool, which points the virtual DNS addresses at it.
func (d *demo) dnsFirst() error {
	res, err := d.setDNS(sandbox.Resolver1)
	if err != nil {
		return err
	}
	rules, err := d.dnatRules()
	if err != nil {
		return err
	}
	d.check(res.code == 0, fmt.Sprintf("DNS: resolv.conf nameserver %s; qubes-setup-dnat-to-ns exit %d (want 0); chain ip qubes dnat-dns:",
		sandbox.Resolver1, res.code), append(rules, d.logLines(res, res.code != 0)...)...)
	d.baseline, err = d.sb.NetVM.KernelState()
	return err
}

// online: Xen creates each vif and runs the hotplug script.
func (d *demo) online() error {
	for _, c := range d.clients {
		if d.ctx.Err() != nil {
			return nil // run reports the interruption
		}
		if err := c.CreateVif(); err != nil {
			return err
		}
		res, err := d.hotplug(c, "online")
		if err != nil {
			return err
		}
		left, err := d.onVif(c)
		if err != nil {
			return err
		}
		status, _ := d.xs.Get(c.xenbusPath + "/hotplug-status")
		ok := res.code == 0 && status == "connected"
		d.check(ok, fmt.Sprintf("online %s (%s): exit %d, hotplug-status %q; on the vif:", c.Vif, c.label, res.code, status),
			append(left, d.logLines(res, !ok)...)...)
	}
	return nil
}

// traffic: real packets from every client: pings to the internet host,
// DNS over UDP and TCP through the virtual DNS address, spoofed sources
// dropped.
func (d *demo) traffic() error {
	for _, c := range d.clients {
		if d.ctx.Err() != nil {
			return nil
		}
		var parts, problems []string
		for _, target := range c.pings {
			if err := c.NS.AwaitPing(d.ctx, target, pingTimeout); err != nil {
				problems = append(problems, err.Error())
				continue
			}
			parts = append(parts, "ping "+target)
		}
		for _, proto := range []string{"UDP", "TCP"} {
			got, err := sandbox.Query(c.NS, primaryDNS, "whoami.test", proto == "TCP")
			if err != nil || got != sandbox.Resolver1 {
				problems = append(problems, fmt.Sprintf("whoami.test via %s/%s: %q %v, want %s", primaryDNS, proto, got, err, sandbox.Resolver1))
				continue
			}
			parts = append(parts, fmt.Sprintf("whoami.test via %s/%s → %s", primaryDNS, proto, got))
		}
		for _, source := range c.spoofs {
			if err := d.spoofDropped(c, source); err != nil {
				problems = append(problems, fmt.Sprintf("spoofed source %s: %v", source, err))
				continue
			}
			parts = append(parts, "spoofed "+source+" dropped")
		}
		d.check(len(problems) == 0, fmt.Sprintf("traffic from %s: %s", c.Vif, strings.Join(parts, ", ")), problems...)
	}
	return nil
}

// spoofDropped gives the client an address it has no right to, pings from
// it and checks that no reply came and the antispoof chain counted a drop.
func (d *demo) spoofDropped(c *client, source string) error {
	family, prefix, extra, target := "ip", "/32", []string(nil), sandbox.InternetHost
	if strings.Contains(source, ":") {
		family, prefix, extra, target = "ip6", "/128", []string{"nodad"}, sandbox.InternetHost6
	}
	if _, err := c.NS.Exec("ip", append([]string{"addr", "add", source + prefix, "dev", "eth0"}, extra...)...); err != nil {
		return err
	}
	// A failed removal only leaves an address in a namespace that goes
	// away with the sandbox.
	defer func() { _, _ = c.NS.Exec("ip", "addr", "del", source+prefix, "dev", "eth0") }()
	before, err := d.sb.NetVM.AntispoofDrops(family)
	if err != nil {
		return err
	}
	_, pingErr := c.NS.Exec("ping", "-c1", "-W1", "-I", source, target)
	after, err := d.sb.NetVM.AntispoofDrops(family)
	switch {
	case err != nil:
		return err
	case pingErr == nil:
		return fmt.Errorf("ping %s from it was answered", target)
	case after == before:
		return fmt.Errorf("chain %s qubes antispoof counted no drop", family)
	}
	return nil
}

// dnsChange: the uplink's DNS server changes; every client's queries follow,
// and a second run with nothing new reports "unchanged" (exit 100).
func (d *demo) dnsChange() error {
	res, err := d.setDNS(sandbox.Resolver2)
	if err != nil {
		return err
	}
	var problems, followed []string
	for _, c := range d.clients {
		for _, tcp := range []bool{false, true} {
			if got, err := sandbox.Query(c.NS, primaryDNS, "whoami.test", tcp); err != nil || got != sandbox.Resolver2 {
				problems = append(problems, fmt.Sprintf("%s tcp=%v: %q %v, want %s", c.Vif, tcp, got, err, sandbox.Resolver2))
			}
		}
		followed = append(followed, c.Vif)
	}
	again, err := d.runDNSTool()
	if err != nil {
		return err
	}
	rules, err := d.dnatRules()
	if err != nil {
		return err
	}
	details := append(rules, problems...)
	details = append(details, d.logLines(res, res.code != 0)...)
	details = append(details, d.logLines(again, again.code != 100)...)
	d.check(res.code == 0 && again.code == 100 && len(problems) == 0,
		fmt.Sprintf("DNS change: resolv.conf nameserver %s; exit %d (want 0); whoami.test via %s from %s (UDP, TCP) → %s; run again: exit %d (want 100, unchanged)",
			sandbox.Resolver2, res.code, primaryDNS, strings.Join(followed, ", "), sandbox.Resolver2, again.code), details...)
	return nil
}

// dns6: dom0 gives the network qube IPv6 virtual DNS addresses. While the
// uplink knows no IPv6 server, a query to them is refused at once, so the
// client's resolver moves on to the IPv4 address without a timeout; once
// an IPv6 server appears, they answer through it; when dom0 takes the keys
// away, the IPv6 chains go and IPv4 DNS is as before.
func (d *demo) dns6() error {
	c := d.clients[0] // the dual-stack client
	if err := d.sb.StartResolver(sandbox.Resolver6a); err != nil {
		return err
	}
	d.db.Set("/qubes-netvm-primary-dns6", primaryDNS6)
	d.db.Set("/qubes-netvm-secondary-dns6", secondaryDNS6)
	res, err := d.setDNS(sandbox.Resolver2)
	if err != nil {
		return err
	}
	var problems []string
	for _, tcp := range []bool{false, true} {
		if got, err := sandbox.Query(c.NS, primaryDNS6, "whoami.test", tcp); !errors.Is(err, syscall.ECONNREFUSED) {
			problems = append(problems, fmt.Sprintf("%s tcp=%v without an IPv6 server: %q %v, want connection refused", primaryDNS6, tcp, got, err))
		}
	}
	d.check(res.code == 0 && len(problems) == 0,
		fmt.Sprintf("IPv6 DNS keys %s %s, no IPv6 server upstream: exit %d (want 0); whoami.test via %s (UDP, TCP) refused at once, no timeout",
			primaryDNS6, secondaryDNS6, res.code, primaryDNS6), append(problems, d.logLines(res, res.code != 0)...)...)

	if res, err = d.setDNS(sandbox.Resolver2, sandbox.Resolver6a); err != nil {
		return err
	}
	rules, err := d.chainRules("ip6", "dnat-dns")
	if err != nil {
		return err
	}
	problems = nil
	want := sandbox.Whoami(sandbox.Resolver6a)
	for _, tcp := range []bool{false, true} {
		if got, err := sandbox.Query(c.NS, primaryDNS6, "whoami.test", tcp); err != nil || got != want {
			problems = append(problems, fmt.Sprintf("%s tcp=%v: %q %v, want %s", primaryDNS6, tcp, got, err, want))
		}
	}
	d.check(res.code == 0 && len(problems) == 0,
		fmt.Sprintf("IPv6 DNS: resolv.conf adds nameserver %s; exit %d (want 0); whoami.test via %s from %s (UDP, TCP) → %s, the answer of %s; chain ip6 qubes dnat-dns:",
			sandbox.Resolver6a, res.code, primaryDNS6, c.Vif, want, sandbox.Resolver6a), append(append(rules, problems...), d.logLines(res, res.code != 0)...)...)

	d.db.Delete("/qubes-netvm-primary-dns6")
	d.db.Delete("/qubes-netvm-secondary-dns6")
	if res, err = d.runDNSTool(); err != nil {
		return err
	}
	out, err := d.sb.NetVM.Exec("nft", "list", "table", "ip6", netvm.Table)
	if err != nil {
		return err
	}
	left := strings.Contains(string(out), "dnat-dns")
	d.check(res.code == 0 && !left, fmt.Sprintf("IPv6 DNS keys removed: exit %d (want 0); table ip6 qubes has no DNS chain left", res.code),
		d.logLines(res, res.code != 0)...)
	return nil
}

// offline: Xen runs the hotplug script's offline, then deletes the vif; the
// network qube must then be as it was before the first vif appeared.
func (d *demo) offline() error {
	for _, c := range d.clients {
		if d.ctx.Err() != nil {
			return nil
		}
		res, err := d.hotplug(c, "offline")
		if err != nil {
			return err
		}
		left, err := d.onVif(c)
		if err != nil {
			return err
		}
		d.check(res.code == 0 && len(left) == 0, fmt.Sprintf("offline %s: exit %d, nothing left on the vif", c.Vif, res.code),
			append(left, d.logLines(res, res.code != 0)...)...)
		if err := c.DeleteVif(); err != nil {
			return err
		}
	}
	now, err := d.sb.NetVM.KernelState()
	if err != nil {
		return err
	}
	var left []string
	for _, l := range strings.Split(sandbox.StateDiff(d.baseline, now), "\n") {
		// The DNS change rewrote the DNAT rules since the baseline.
		if l != "" && !strings.Contains(l, "dnat to") {
			left = append(left, l)
		}
	}
	for _, c := range d.clients {
		if ns := c.natNamespace(); ns != "" && exists(filepath.Join("/run/netns", ns)) {
			left = append(left, "namespace "+ns)
		}
	}
	d.check(len(left) == 0, "netvm clean: links, addresses, routes, neighbours, ruleset and sysctls as before the first vif, no NAT namespace", left...)
	return nil
}

// keep leaves the namespaces up, prints how to explore and remove them,
// and stops the fakes, which only the binaries needed.
func (d *demo) keep() {
	netvm, c1, c2 := d.sb.NetVM.Name, d.clients[0], d.clients[1]
	fmt.Println(strings.Join([]string{
		"The sandbox stays up. Explore it:",
		"  ip netns exec " + netvm + " nft list ruleset",
		"  ip -n " + netvm + " route; ip -n " + netvm + " -6 route; ip -n " + netvm + " neigh",
		"  ip netns exec " + c1.NS.Name + " ping -c1 " + sandbox.InternetHost6,
		"  ip netns exec " + c2.NS.Name + " dig +short @" + primaryDNS + " whoami.test",
		"  ip netns list | grep -e " + d.sb.ID + " -e " + d.clients[2].natNamespace(),
		"Remove it: make demo-clean",
	}, "\n"))
	if err := errors.Join(d.xs.Close(), d.db.Close(), os.RemoveAll(d.dir)); err != nil {
		fmt.Printf("✗ keep: %v\n", err)
		d.failed = true
	}
}

// cleanUp removes everything and checks that nothing is left.
func (d *demo) cleanUp() {
	var errs []error
	if d.xs != nil {
		errs = append(errs, d.xs.Close())
	}
	if d.db != nil {
		errs = append(errs, d.db.Close())
	}
	var namespaces []string
	for _, c := range d.clients {
		if c.Client != nil {
			namespaces = append(namespaces, c.NS.Name, c.natNamespace())
		}
	}
	if d.sb != nil {
		namespaces = append(namespaces, d.sb.NetVM.Name, d.sb.Upstream.Name)
		errs = append(errs, d.sb.Close())
	}
	errs = append(errs, os.RemoveAll(d.dir))
	var left []string
	for _, ns := range namespaces {
		if ns != "" && exists(filepath.Join("/run/netns", ns)) {
			left = append(left, "namespace "+ns)
		}
	}
	if exists(d.dir) {
		left = append(left, d.dir)
	}
	if err := errors.Join(errs...); err != nil {
		left = append(left, err.Error())
	}
	d.check(len(left) == 0, "cleanup: the namespaces, the resolvers, the fakes and "+d.dir+" removed", left...)
}
