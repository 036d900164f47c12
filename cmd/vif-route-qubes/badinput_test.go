package main_test

import (
	"strings"
	"testing"

	"github.com/qubes-netvm/qnet/internal/sandbox"
)

// Each bad input fails with a message naming the value, reports the error
// to the toolstack where it can, and leaves the kernel as it was.
func TestBadInput(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 21, IPv4: "10.137.0.21"}, "10.137.0.21")
	p := xenbusPath(21, 0)
	tests := []struct {
		name    string
		vif     string
		env     []string
		args    []string
		setup   func()
		undo    func()
		wantErr string
	}{
		{name: "no domid", vif: "vif1", wantErr: `bad interface name "vif1"`},
		{name: "leading zero", vif: "vif01.0", wantErr: `bad interface name "vif01.0"`},
		{name: "shell junk", vif: "vif1.0;id", wantErr: `bad interface name "vif1.0;id"`},
		{name: "not a vif", vif: "eth0", wantErr: `bad interface name "eth0"`},
		{name: "domid too large", vif: "vif32753.0", wantErr: "domain id 32753 is above 32752"},
		{name: "bad MAC", vif: "vif21.0", setup: func() { r.xs.Set(p+"/mac", "00:16:3E:5E:6C:15") },
			undo: func() { r.xs.Set(p+"/mac", "00:16:3e:5e:6c:15") }, wantErr: `bad MAC address "00:16:3E:5E:6C:15"`},
		{name: "bad address", vif: "vif21.0", setup: func() { r.xs.Set(p+"/ip", "10.137.0.21 10.137.0.256") },
			undo: func() { r.xs.Set(p+"/ip", "10.137.0.21") }, wantErr: `bad address "10.137.0.256"`},
		{name: "address with zone", vif: "vif21.0", setup: func() { r.xs.Set(p+"/ip", "fe80::1%eth0") },
			undo: func() { r.xs.Set(p+"/ip", "10.137.0.21") }, wantErr: `bad address "fe80::1%eth0"`},
		{name: "bad gateway", vif: "vif21.0", setup: func() { r.db.Set("/qubes-netvm-gateway", "10.138.0") },
			undo: func() { r.db.Set("/qubes-netvm-gateway", backIPv4) }, wantErr: `bad IPv4 address "10.138.0"`},
		{name: "QubesDB absent", vif: "vif21.0", env: []string{"QUBESDB_SOCKET=/nonexistent/qubesdb.sock"}, wantErr: "/nonexistent/qubesdb.sock"},
		{name: "QubesDB stalled", vif: "vif21.0", setup: func() { r.db.Stall("/qubes-netvm-gateway") },
			undo: func() { r.db.Set("/qubes-netvm-gateway", backIPv4) }, wantErr: "/qubes-netvm-gateway"},
		{name: "unknown type_if", vif: "vif21.0", args: []string{"online", "type_if=bridge"}, wantErr: `unknown interface type type_if="bridge"`},
		{name: "unknown command", vif: "vif21.0", args: []string{"start"}, wantErr: `invalid command "start"`},
		{name: "add tap", vif: "vif21.0", args: []string{"add", "type_if=tap"}, env: []string{"INTERFACE=vif21.0-emu"}, wantErr: "emulated (tap)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.setup != nil {
				tt.setup()
			}
			if tt.undo != nil {
				defer tt.undo()
			}
			args := tt.args
			if args == nil {
				args = []string{"online", "type_if=vif"}
			}
			before := r.snapshot()
			res := r.hotplug(tt.vif, 21, 0, tt.env, args...)
			if res.code != 1 || !strings.Contains(res.stderr, tt.wantErr) {
				t.Fatalf("exit %d, want 1 with %q in stderr:\n%s", res.code, tt.wantErr, res.stderr)
			}
			r.requireUnchanged(before)
		})
	}
}

func TestMissingXenbusPath(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	res := r.hotplug("vif21.0", 21, 0, []string{"XENBUS_PATH="}, "online")
	if res.code != 1 || !strings.Contains(res.stderr, "XENBUS_PATH is not set") {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
}

func TestMissingBaseRulesetChangesNothing(t *testing.T) {
	r := newRig(t, sandbox.Options{NoBaseRuleset: true})
	r.client(sandbox.ClientSpec{Domid: 22, IPv4: "10.137.0.22"}, "10.137.0.22")
	before := r.snapshot()
	res := r.hotplug("vif22.0", 22, 0, nil, "online")
	if res.code != 1 || !strings.Contains(res.stderr, "base ruleset missing: set ip qubes allowed") {
		t.Fatalf("exit %d:\n%s", res.code, res.stderr)
	}
	r.requireUnchanged(before)
	status, _ := r.xs.Get(xenbusPath(22, 0) + "/hotplug-status")
	msg, _ := r.xs.Get(xenbusPath(22, 0) + "/hotplug-error")
	if status != "error" || !strings.Contains(msg, "base ruleset missing") || strings.Contains(msg, "\n") {
		t.Errorf("hotplug-status %q, hotplug-error %q", status, msg)
	}
}

// Every command/type_if pair of the contract.
func TestCommandTypePairs(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 23, IPv4: "10.137.0.23"}, "10.137.0.23")
	before := r.snapshot()
	for _, args := range [][]string{
		{"online", "type_if=tap"}, {"offline", "type_if=tap"}, {"add", "type_if=vif"},
		{"remove", "type_if=vif"}, {"remove", "type_if=tap"},
	} {
		if res := r.hotplug("vif23.0", 23, 0, []string{"INTERFACE=vif23.0-emu"}, args...); res.code != 0 {
			t.Errorf("%v: exit %d, want 0:\n%s", args, res.code, res.stderr)
		}
	}
	r.requireUnchanged(before)
}

func TestDryRunChangesNothing(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 24, IPv4: "10.137.0.24"}, "10.137.0.24")
	before := r.snapshot()
	res := r.mustHotplug("vif24.0", 24, 0, "--dry-run", "online")
	for _, want := range []string{"ip link set dev vif24.0 group 2 up", "ip route add 10.137.0.24 dev vif24.0 metric 32728", `"vif24.0" . 10.137.0.24`} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, res.stdout)
		}
	}
	r.requireUnchanged(before)
	if _, ok := r.xs.Get(xenbusPath(24, 0) + "/hotplug-status"); ok {
		t.Error("dry run wrote hotplug-status")
	}
}

// A XenStore daemon that is absent or hangs gives an error naming it (or
// the path it hung on) within the timeout, and changes nothing.
func TestXenStoreAbsentOrStalled(t *testing.T) {
	r := newRig(t, sandbox.Options{})
	r.client(sandbox.ClientSpec{Domid: 27, IPv4: "10.137.0.27"}, "10.137.0.27")
	before := r.snapshot()
	res := r.hotplug("vif27.0", 27, 0, []string{"XENSTORED_PATH=/nonexistent/xenstored.sock"}, "online")
	if res.code != 1 || !strings.Contains(res.stderr, "/nonexistent/xenstored.sock") {
		t.Errorf("absent XenStore: exit %d:\n%s", res.code, res.stderr)
	}
	r.requireUnchanged(before)

	r.xs.Stall(xenbusPath(27, 0) + "/ip")
	res = r.hotplug("vif27.0", 27, 0, nil, "online")
	if res.code != 1 || !strings.Contains(res.stderr, xenbusPath(27, 0)+"/ip") || !strings.Contains(res.stderr, "timeout") {
		t.Errorf("stalled XenStore: exit %d:\n%s", res.code, res.stderr)
	}
	r.requireUnchanged(before)
}
