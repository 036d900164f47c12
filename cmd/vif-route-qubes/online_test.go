package main_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

func TestOnlineOfflineIPv4(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(sandbox.ClientSpec{Domid: 12, IPv4: "10.137.0.12"}, "10.137.0.12")

	r.mustHotplug("vif12.0", 12, 0, "online", "type_if=vif")

	if got, want := r.routes("-4", "vif12.0"), []route{{Dst: "10.137.0.12", Dev: "vif12.0", Protocol: "boot", Scope: "link", Metric: 32740}}; !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %+v, want %+v", got, want)
	}
	if got := r.neighbours("vif12.0"); len(got) != 1 || got[0].Dst != "10.137.0.12" || got[0].Lladdr != c.Spec.MAC || !slices.Contains(got[0].State, "PERMANENT") {
		t.Errorf("neighbours = %+v, want 10.137.0.12 lladdr %s PERMANENT", got, c.Spec.MAC)
	}
	l, _ := r.link("vif12.0")
	if got := l.globalAddrs(); !reflect.DeepEqual(got, []string{backIPv4 + "/32"}) {
		t.Errorf("addresses = %v, want %s/32", got, backIPv4)
	}
	if !slices.Contains(l.Flags, "UP") {
		t.Errorf("link flags %v lack UP", l.Flags)
	}
	if got := r.elements("ip", "allowed"); !reflect.DeepEqual(got, []string{`"vif12.0" . 10.137.0.12`}) {
		t.Errorf("allowed = %v", got)
	}
	if got := r.elements("ip", "downstream"); !reflect.DeepEqual(got, []string{"10.137.0.12"}) {
		t.Errorf("downstream = %v", got)
	}
	if got := r.elements("ip6", "allowed"); len(got) != 0 {
		t.Errorf("ip6 allowed = %v, want none", got)
	}
	if got := r.sysctl("net/ipv4/conf/vif12.0/proxy_arp"); got != "1" {
		t.Errorf("proxy_arp = %s", got)
	}
	if got := r.linkGroup("vif12.0"); got != "2" {
		t.Errorf("group = %s, want 2", got)
	}
	if v, _ := r.xs.Get(xenbusPath(12, 0) + "/hotplug-status"); v != "connected" {
		t.Errorf("hotplug-status = %q, want connected", v)
	}

	// Real packets: the client reaches its gateway and the upstream host.
	ping(t, c.NS, "10.138.0.1")
	ping(t, c.NS, "203.0.113.1")

	r.mustHotplug("vif12.0", 12, 0, "offline", "type_if=vif")
	if got := r.elements("ip", "allowed"); len(got) != 0 {
		t.Errorf("allowed after offline = %v", got)
	}
	if got := r.routes("-4", "vif12.0"); len(got) != 0 {
		t.Errorf("routes after offline = %v", got)
	}
	if got := r.neighbours("vif12.0"); len(got) != 0 {
		t.Errorf("neighbours after offline = %v", got)
	}
	noPing(t, c.NS, "203.0.113.1")
}

func TestOnlineDualStackSeveralAddresses(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", backIPv6)
	c := r.client(sandbox.ClientSpec{Domid: 7, IPv4: "10.137.0.7", IPv6: "fd09:24ef:4179::a89:7", Gateway6: backIPv6},
		"10.137.0.7 10.137.0.70 fd09:24ef:4179::a89:7 fd09:24ef:4179::a89:77")

	r.mustHotplug("vif7.0", 7, 0, "online")

	wantV4 := []route{
		{Dst: "10.137.0.7", Dev: "vif7.0", Protocol: "boot", Scope: "link", Metric: 32745},
		{Dst: "10.137.0.70", Dev: "vif7.0", Protocol: "boot", Scope: "link", Metric: 32745},
	}
	if got := r.routes("-4", "vif7.0"); !reflect.DeepEqual(got, wantV4) {
		t.Errorf("IPv4 routes = %+v, want %+v", got, wantV4)
	}
	var hostRoutes []string
	for _, rt := range r.routes("-6", "vif7.0") {
		if rt.Metric == 32745 {
			hostRoutes = append(hostRoutes, fmt.Sprintf("%s %s %s", rt.Dst, rt.Protocol, rt.Scope))
		}
	}
	slices.Sort(hostRoutes)
	if want := []string{"fd09:24ef:4179::a89:7 boot global", "fd09:24ef:4179::a89:77 boot global"}; !reflect.DeepEqual(hostRoutes, want) {
		t.Errorf("IPv6 host routes = %q, want %q", hostRoutes, want)
	}
	if got, want := len(r.neighbours("vif7.0")), 4; got != want {
		t.Errorf("%d neighbours, want %d: %+v", got, want, r.neighbours("vif7.0"))
	}
	l, _ := r.link("vif7.0")
	if got, want := l.globalAddrs(), []string{backIPv4 + "/32", backIPv6 + "/128"}; !reflect.DeepEqual(got, want) {
		t.Errorf("addresses = %v, want %v", got, want)
	}
	if got := r.sysctl("net/ipv6/conf/vif7.0/proxy_ndp"); got != "1" {
		t.Errorf("proxy_ndp = %s", got)
	}
	wantAllowed6 := []string{`"vif7.0" . fd09:24ef:4179::a89:7`, `"vif7.0" . fd09:24ef:4179::a89:77`}
	if got := r.elements("ip6", "allowed"); !reflect.DeepEqual(got, wantAllowed6) {
		t.Errorf("ip6 allowed = %v, want %v", got, wantAllowed6)
	}
	ping(t, c.NS, "203.0.113.1")
	ping(t, c.NS, "2001:db8:203::1")

	r.mustHotplug("vif7.0", 7, 0, "offline")
	// No route, address, neighbour or element of the vif remains (upstream
	// leaves the IPv6 neighbour).
	if got := r.neighbours("vif7.0"); len(got) != 0 {
		t.Errorf("neighbours after offline = %+v", got)
	}
	if got := r.elements("ip6", "allowed"); len(got) != 0 {
		t.Errorf("ip6 allowed after offline = %v", got)
	}
	l, _ = r.link("vif7.0")
	if got := l.globalAddrs(); len(got) != 0 {
		t.Errorf("addresses after offline = %v", got)
	}
}

func TestOnlineIPv6DisabledOnVif(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", backIPv6)
	r.client(sandbox.ClientSpec{Domid: 8, IPv4: "10.137.0.8"}, "10.137.0.8 fd09:24ef:4179::a89:8")
	if err := r.sb.NetVM.SetSysctl("net/ipv6/conf/vif8.0/disable_ipv6", "1"); err != nil {
		t.Fatal(err)
	}
	res := r.mustHotplug("vif8.0", 8, 0, "online")
	if !strings.Contains(res.stderr, "IPv6 is disabled") {
		t.Errorf("stderr does not log the skipped IPv6 route:\n%s", res.stderr)
	}
	if got := r.routes("-4", "vif8.0"); len(got) != 1 {
		t.Errorf("IPv4 routes = %+v", got)
	}
	if got := r.neighbours("vif8.0"); len(got) != 1 || got[0].Dst != "10.137.0.8" {
		t.Errorf("neighbours = %+v, want only the IPv4 one", got)
	}
	l, _ := r.link("vif8.0")
	if got := l.globalAddrs(); !reflect.DeepEqual(got, []string{backIPv4 + "/32"}) {
		t.Errorf("addresses = %v, want only the back IPv4", got)
	}
	// The IPv6 address is still anti-spoofed: it is in the sets.
	if got := r.elements("ip6", "allowed"); !reflect.DeepEqual(got, []string{`"vif8.0" . fd09:24ef:4179::a89:8`}) {
		t.Errorf("ip6 allowed = %v", got)
	}
	r.mustHotplug("vif8.0", 8, 0, "offline")
	if got := r.elements("ip6", "allowed"); len(got) != 0 {
		t.Errorf("ip6 allowed after offline = %v", got)
	}
}

func TestBackIPv6LinkLocalIsNotAdded(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", "fe80::fcff:ffff:feff:ffff")
	r.client(sandbox.ClientSpec{Domid: 9, IPv4: "10.137.0.9"}, "10.137.0.9 fd09:24ef:4179::a89:9")
	r.mustHotplug("vif9.0", 9, 0, "online")
	l, _ := r.link("vif9.0")
	if got := l.globalAddrs(); !reflect.DeepEqual(got, []string{backIPv4 + "/32"}) {
		t.Errorf("addresses = %v, want only the back IPv4", got)
	}
	if got := r.sysctl("net/ipv6/conf/vif9.0/proxy_ndp"); got != "0" {
		t.Errorf("proxy_ndp = %s, want 0", got)
	}
}

func TestNoAddresses(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 4, IPv4: "10.137.0.4"}, "")
	// QubesDB is not even read for a vif without addresses.
	r.db.Stall("/qubes-netvm-gateway")
	writeHook(t, r.hooksDir, "10-log", filepath.Join(r.dir, "hook.log"))
	r.mustHotplug("vif4.0", 4, 0, "online")
	l, _ := r.link("vif4.0")
	if !slices.Contains(l.Flags, "UP") || len(l.globalAddrs()) != 0 {
		t.Errorf("link = %+v, want up with no address", l)
	}
	if got := readLines(t, filepath.Join(r.dir, "hook.log")); !reflect.DeepEqual(got, []string{"10-log online|vif4.0|vif|"}) {
		t.Errorf("hook calls = %q", got)
	}
}

func TestDomainZero(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 0, IPv4: "10.137.0.100"}, "10.137.0.100")
	r.mustHotplug("vif0.0", 0, 0, "online")
	if got := r.routes("-4", "vif0.0"); len(got) != 1 || got[0].Metric != 32752 {
		t.Errorf("routes = %+v, want metric 32752", got)
	}
}

func TestOnlineTwiceIsIdempotent(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", backIPv6)
	r.client(sandbox.ClientSpec{Domid: 3, IPv4: "10.137.0.3", IPv6: "fd09:24ef:4179::a89:3", Gateway6: backIPv6}, "10.137.0.3 fd09:24ef:4179::a89:3")
	r.mustHotplug("vif3.0", 3, 0, "online")
	// Duplicate address detection finishes on its own a second after the
	// link comes up; let it settle so the capture compares like with like.
	testsupport.WaitFor(t, "IPv6 duplicate address detection on vif3.0", func() bool {
		out, err := r.sb.NetVM.Exec("ip", "-6", "addr", "show", "dev", "vif3.0", "tentative")
		return err == nil && len(strings.TrimSpace(string(out))) == 0
	})
	first := r.snapshot()
	r.mustHotplug("vif3.0", 3, 0, "online")
	r.requireUnchanged(first)
}

func TestOfflineOfNeverOnlineOrGoneVif(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(sandbox.ClientSpec{Domid: 5, IPv4: "10.137.0.5"}, "10.137.0.5")
	before := r.snapshot()
	r.mustHotplug("vif5.0", 5, 0, "offline")
	r.requireUnchanged(before)

	r.mustHotplug("vif5.0", 5, 0, "online")
	r.mustHotplug("vif5.0", 5, 0, "offline")
	if err := c.DeleteVif(); err != nil {
		t.Fatal(err)
	}
	gone := r.snapshot()
	r.mustHotplug("vif5.0", 5, 0, "offline")
	r.requireUnchanged(gone)
}

func TestOfflineAfterDeviceVanishedRemovesSetElements(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(sandbox.ClientSpec{Domid: 6, IPv4: "10.137.0.6"}, "10.137.0.6")
	r.mustHotplug("vif6.0", 6, 0, "online")
	if err := c.DeleteVif(); err != nil {
		t.Fatal(err)
	}
	r.mustHotplug("vif6.0", 6, 0, "offline")
	if got := r.elements("ip", "allowed"); len(got) != 0 {
		t.Errorf("allowed = %v, want none", got)
	}
}

func TestSpoofedSourceDropped(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-netvm-gateway6", backIPv6)
	c := r.client(sandbox.ClientSpec{Domid: 11, IPv4: "10.137.0.11", IPv6: "fd09:24ef:4179::a89:b", Gateway6: backIPv6}, "10.137.0.11 fd09:24ef:4179::a89:b")
	r.mustHotplug("vif11.0", 11, 0, "online")
	for _, cmd := range [][]string{
		{"ip", "addr", "add", "10.137.0.99/32", "dev", "eth0"},
		{"ip", "addr", "add", "fd09:24ef:4179::a89:99/128", "dev", "eth0", "nodad"},
	} {
		if _, err := c.NS.Exec(cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	ping(t, c.NS, "203.0.113.1")
	noPing(t, c.NS, "-I", "10.137.0.99", "203.0.113.1")
	noPing(t, c.NS, "-I", "fd09:24ef:4179::a89:99", "2001:db8:203::1")
	ping(t, c.NS, "-I", "fd09:24ef:4179::a89:b", "2001:db8:203::1")
}

func TestHooks(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	log := filepath.Join(r.dir, "hook.log")
	writeHook(t, r.hooksDir, "20-second", log)
	writeHook(t, r.hooksDir, "10-first", log)
	if err := os.WriteFile(filepath.Join(r.hooksDir, "15-fails"), []byte("#!/bin/sh\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.hooksDir, "12-not-executable"), []byte("#!/bin/sh\necho ran >> "+log+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.client(sandbox.ClientSpec{Domid: 13, IPv4: "10.137.0.13"}, "10.137.0.13 10.137.0.31")
	res := r.mustHotplug("vif13.0", 13, 0, "online")
	if !strings.Contains(res.stderr, "15-fails") {
		t.Errorf("the failing hook is not logged:\n%s", res.stderr)
	}
	r.mustHotplug("vif13.0", 13, 0, "offline")
	want := []string{
		"10-first online|vif13.0|vif|10.137.0.13", "20-second online|vif13.0|vif|10.137.0.13",
		"10-first online|vif13.0|vif|10.137.0.31", "20-second online|vif13.0|vif|10.137.0.31",
		"10-first offline|vif13.0|vif|10.137.0.13", "20-second offline|vif13.0|vif|10.137.0.13",
		"10-first offline|vif13.0|vif|10.137.0.31", "20-second offline|vif13.0|vif|10.137.0.31",
	}
	if got := readLines(t, log); !reflect.DeepEqual(got, want) {
		t.Errorf("hook calls:\n%q\nwant\n%q", got, want)
	}
}

func TestVifnameRename(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(sandbox.ClientSpec{Domid: 14, IPv4: "10.137.0.14"}, "10.137.0.14")
	r.xs.Set(xenbusPath(14, 0)+"/vifname", "work-net")
	r.mustHotplug("vif14.0", 14, 0, "online")
	if _, ok := r.link("vif14.0"); ok {
		t.Error("vif14.0 still exists after the rename")
	}
	if got := r.routes("-4", "work-net"); len(got) != 1 || got[0].Metric != 32738 {
		t.Errorf("routes on work-net = %+v, want one with metric 32738", got)
	}
	if got := r.elements("ip", "allowed"); !reflect.DeepEqual(got, []string{`"work-net" . 10.137.0.14`}) {
		t.Errorf("allowed = %v", got)
	}
	ping(t, c.NS, "203.0.113.1")
	r.mustHotplug("vif14.0", 14, 0, "online") // idempotent after the rename
	r.mustHotplug("vif14.0", 14, 0, "offline")
	if got := r.elements("ip", "allowed"); len(got) != 0 {
		t.Errorf("allowed after offline = %v", got)
	}
}

func TestVifnameTaken(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 15, IPv4: "10.137.0.15"}, "10.137.0.15")
	r.client(sandbox.ClientSpec{Domid: 16, IPv4: "10.137.0.16"}, "10.137.0.16")
	r.xs.Set(xenbusPath(15, 0)+"/vifname", "vif16.0")
	before := r.snapshot()
	res := r.hotplug("vif15.0", 15, 0, nil, "online")
	if res.code != 1 || !strings.Contains(res.stderr, "cannot rename vif15.0 to vif16.0: that name is taken") {
		t.Fatalf("exit %d, stderr:\n%s", res.code, res.stderr)
	}
	r.requireUnchanged(before)
	if v, _ := r.xs.Get(xenbusPath(15, 0) + "/hotplug-status"); v != "error" {
		t.Errorf("hotplug-status = %q, want error", v)
	}
}

func TestHardening(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.db.Set("/qubes-service/harden-network-interfaces", "1")
	r.client(sandbox.ClientSpec{Domid: 17, IPv4: "10.137.0.17"}, "10.137.0.17")
	r.client(sandbox.ClientSpec{Domid: 18, IPv4: "10.137.0.18"}, "10.137.0.18")
	r.mustHotplug("vif17.0", 17, 0, "online")
	for key, want := range map[string]string{
		"net/ipv4/conf/vif17.0/accept_redirects":             "0",
		"net/ipv4/conf/vif17.0/send_redirects":               "0",
		"net/ipv4/conf/all/send_redirects":                   "0",
		"net/ipv4/conf/vif17.0/drop_unicast_in_l2_multicast": "1",
		"net/ipv6/conf/vif17.0/accept_ra":                    "0",
		"net/ipv6/conf/vif17.0/accept_source_route":          "-1",
		"net/ipv6/conf/all/accept_dad":                       "0",
		// Other interfaces are left alone, as with upstream's --prefix filters.
		"net/ipv4/conf/vif18.0/send_redirects": "1",
		"net/ipv4/conf/eth0/send_redirects":    "1",
	} {
		if got := r.sysctl(key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
}

func TestLateDevice(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	c := r.client(sandbox.ClientSpec{Domid: 19, IPv4: "10.137.0.19", DeferVif: true}, "10.137.0.19")
	cmd, stderr := r.start("vif19.0", 19, 0, "online")
	// Create the device only once the hotplug says it is waiting for it.
	waiting := make(chan string, 1)
	go func() {
		var seen strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			seen.WriteString(sc.Text() + "\n")
			if strings.Contains(sc.Text(), "waiting") {
				waiting <- ""
			}
		}
		waiting <- seen.String()
	}()
	if out := <-waiting; out != "" {
		t.Fatalf("the hotplug never waited for the device:\n%s", out)
	}
	if err := c.CreateVif(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("online with a late device: %v", err)
	}
	ping(t, c.NS, "203.0.113.1")
}

func TestParallelHotplugs(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	const n = 32
	clients := map[int]*sandbox.Client{}
	for i := 1; i <= n; i++ {
		clients[i] = r.client(sandbox.ClientSpec{Domid: 100 + i, IPv4: fmt.Sprintf("10.137.1.%d", i)}, fmt.Sprintf("10.137.1.%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			vif := fmt.Sprintf("vif%d.0", 100+i)
			// Odd ones go online and offline again; even ones stay online.
			cmds := []string{"online"}
			if i%2 == 1 {
				cmds = append(cmds, "offline")
			}
			for _, cmd := range cmds {
				if res := r.hotplug(vif, 100+i, 0, nil, cmd); res.code != 0 {
					errs <- fmt.Sprintf("%s %s: exit %d: %s", cmd, vif, res.code, res.stderr)
				}
			}
			if i%2 == 1 { // Xen deletes the device after offline
				if err := clients[i].DeleteVif(); err != nil {
					errs <- err.Error()
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var want []string
	for i := 2; i <= n; i += 2 {
		want = append(want, fmt.Sprintf(`"vif%d.0" . 10.137.1.%d`, 100+i, i))
	}
	got := r.elements("ip", "allowed")
	slices.Sort(want)
	slices.Sort(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("allowed after parallel hotplugs:\n%v\nwant\n%v", got, want)
	}
	// Where the kernel has flowtables, the last rebuild must cover exactly
	// the devices that remain.
	var listing struct {
		Nftables []struct {
			Flowtable *struct {
				Dev any `json:"dev"`
			} `json:"flowtable"`
		} `json:"nftables"`
	}
	if err := r.sb.NetVM.NftJSON(&listing, "list", "flowtables", "inet"); err != nil {
		t.Fatal(err)
	}
	for _, o := range listing.Nftables {
		if o.Flowtable == nil {
			continue
		}
		var devs []string
		switch d := o.Flowtable.Dev.(type) {
		case string:
			devs = []string{d}
		case []any:
			for _, x := range d {
				devs = append(devs, fmt.Sprint(x))
			}
		}
		wantDevs := []string{"eth0", "lo"}
		for i := 2; i <= n; i += 2 {
			wantDevs = append(wantDevs, fmt.Sprintf("vif%d.0", 100+i))
		}
		slices.Sort(devs)
		slices.Sort(wantDevs)
		if !slices.Equal(devs, wantDevs) {
			t.Errorf("flowtable devices after parallel hotplugs:\n%v\nwant\n%v", devs, wantDevs)
		}
		return
	}
	t.Log("this kernel has no flowtables: device list not checked here (vmtest checks it)")
}

// Stale flows of an earlier owner of the addresses are purged (both
// directions, both families); other flows stay.
func TestConntrackPurged(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 25, IPv4: "10.137.0.25"}, "10.137.0.25 fd09:24ef:4179::a89:19")
	for _, flow := range [][]string{
		{"-s", "10.137.0.25", "-d", "203.0.113.1"},
		{"-s", "203.0.113.1", "-d", "10.137.0.25"},
		{"-s", "fd09:24ef:4179::a89:19", "-d", "2001:db8:203::1"},
		{"-s", "10.137.0.99", "-d", "203.0.113.1"},
	} {
		args := append([]string{"-I", "-p", "udp", "--sport", "1000", "--dport", "53", "-t", "60", "-u", "SEEN_REPLY"}, flow...)
		if out, err := r.sb.NetVM.Exec("conntrack", args...); err != nil {
			t.Fatalf("conntrack %v: %v\n%s", args, err, out)
		}
	}
	r.mustHotplug("vif25.0", 25, 0, "online")
	out, err := r.sb.NetVM.Exec("conntrack", "-L", "-f", "ipv4")
	if err != nil {
		t.Fatal(err)
	}
	out6, err := r.sb.NetVM.Exec("conntrack", "-L", "-f", "ipv6")
	if err != nil {
		t.Fatal(err)
	}
	all := string(out) + string(out6)
	if strings.Contains(all, "10.137.0.25") || strings.Contains(all, "fd09:24ef:4179::a89:19") {
		t.Errorf("flows of the client's addresses remain:\n%s", all)
	}
	if !strings.Contains(all, "src=10.137.0.99") {
		t.Errorf("an unrelated flow was purged:\n%s", all)
	}
}
