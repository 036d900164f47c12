package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

func (d *demo) xenstoreSocket() string { return filepath.Join(d.dir, "xenstored.sock") }
func (d *demo) qubesdbSocket() string  { return filepath.Join(d.dir, "qubesdb.sock") }

// result is how one run of a project binary went.
type result struct {
	code   int
	stderr string
}

// hotplug runs vif-route-qubes for c as Xen's toolstack does.
func (d *demo) hotplug(c *client, command string) (result, error) {
	return d.runInNetVM("vif-route-qubes",
		[]string{"--lock-file", filepath.Join(d.dir, "vif-route.lock"), "--lock-dir", filepath.Join(d.dir, "locks"),
			"--hotplug-log=", "--hooks-dir", filepath.Join(d.dir, "hooks"), command, "type_if=vif"},
		[]string{
			"vif=" + c.Vif,
			"XENBUS_PATH=" + c.xenbusPath,
			"XENBUS_TYPE=vif",
			"XENBUS_BASE_PATH=backend",
			"script=/etc/xen/scripts/vif-route-qubes",
			"netdev=",
			"XENSTORED_PATH=" + d.xenstoreSocket(),
			"QUBESDB_SOCKET=" + d.qubesdbSocket(),
		})
}

// setDNS rewrites the uplink's resolv.conf with servers, as its DHCP client
// would, and runs the DNS tool.
func (d *demo) setDNS(servers ...string) (result, error) {
	path := filepath.Join(d.dir, "resolv.conf")
	text := "# written by the qnet demo as the uplink's DHCP would\n"
	for _, s := range servers {
		text += "nameserver " + s + "\n"
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		return result{}, fmt.Errorf("write %s: %w", path, err)
	}
	return d.runDNSTool()
}

// runDNSTool runs qubes-setup-dnat-to-ns as NetworkManager's dispatcher
// hook does (no arguments), pointed at the demo's resolv.conf, with no
// D-Bus system bus so systemd-resolved is not asked.
func (d *demo) runDNSTool() (result, error) {
	return d.runInNetVM("qubes-setup-dnat-to-ns",
		[]string{"--resolv-conf", filepath.Join(d.dir, "resolv.conf"), "--qubes-firewall-flag", filepath.Join(d.dir, "qubes-firewall-enabled"),
			"--lock-file", filepath.Join(d.dir, "dnat-to-ns.lock")},
		[]string{"QUBESDB_SOCKET=" + d.qubesdbSocket(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/nonexistent"})
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
	err := d.sb.NetVM.Do(cmd.Start)
	if err == nil {
		err = cmd.Wait()
	}
	res := result{stderr: stderr.String()}
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

// dnatRules lists the rules of chain ip qubes dnat-dns as nft prints them.
func (d *demo) dnatRules() ([]string, error) { return d.chainRules("ip", "dnat-dns") }

// chainRules lists the rules of one chain of table qubes, as nft prints them.
func (d *demo) chainRules(family, chain string) ([]string, error) {
	out, err := d.sb.NetVM.Exec("nft", "list", "chain", family, netvm.Table, chain)
	if err != nil {
		return nil, err
	}
	var rules []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); strings.HasPrefix(l, family+" daddr") {
			rules = append(rules, l)
		}
	}
	return rules, nil
}

// onVif lists, as ip prints them, the addresses, routes and permanent
// neighbours the network qube has on c's vif (the kernel's own link-local
// ones aside). For the NAT-mode client the vif lives in its namespace.
func (d *demo) onVif(c *client) ([]string, error) {
	ns := d.sb.NetVM
	if name := c.natNamespace(); name != "" && exists(filepath.Join("/run/netns", name)) {
		ns = &sandbox.NS{Name: name}
	}
	var lines []string
	for _, cmd := range [][]string{
		{"-o", "addr", "show", "dev", c.Vif, "scope", "global"},
		{"route", "show", "dev", c.Vif},
		{"-6", "route", "show", "dev", c.Vif},
		{"-4", "neigh", "show", "dev", c.Vif, "nud", "permanent"},
		{"-6", "neigh", "show", "dev", c.Vif, "nud", "permanent"},
	} {
		out, err := ns.Exec("ip", cmd...)
		if err != nil {
			return nil, err
		}
		for _, l := range strings.Split(string(out), "\n") {
			l, _, _ = strings.Cut(l, `\`) // -o's continuation: address lifetimes
			if l = strings.Join(strings.Fields(l), " "); l != "" && !strings.HasPrefix(l, "fe80:") {
				lines = append(lines, ns.Name+": "+l)
			}
		}
	}
	return lines, nil
}

// pingTimeout bounds how long a client may need before its first ping
// through the network qube is answered.
const pingTimeout = 10 * time.Second

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}
