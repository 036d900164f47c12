package vif

import (
	"errors"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParse(t *testing.T) {
	base := map[string]string{"vif": "vif12.0", "XENBUS_PATH": "backend/vif/12/0"}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		action  Action
		wantErr string
	}{
		{"online default type", []string{"online"}, base, Online, ""},
		{"online vif", []string{"online", "type_if=vif"}, base, Online, ""},
		{"offline vif", []string{"offline", "type_if=vif"}, base, Offline, ""},
		{"args before command", []string{"type_if=vif", "offline"}, base, Offline, ""},
		{"online tap ignored", []string{"online", "type_if=tap"}, base, Ignore, ""},
		{"offline tap ignored", []string{"offline", "type_if=tap"}, base, Ignore, ""},
		{"add vif ignored", []string{"add", "type_if=vif"}, base, Ignore, ""},
		{"remove vif ignored", []string{"remove", "type_if=vif"}, base, Ignore, ""},
		{"remove tap ignored", []string{"remove", "type_if=tap"}, map[string]string{"INTERFACE": "vif3.0-emu"}, Ignore, ""},
		{"add tap refused", []string{"add", "type_if=tap"}, map[string]string{"INTERFACE": "vif3.0-emu"}, Ignore, "add vif3.0-emu: emulated (tap)"},
		{"bad command", []string{"start"}, base, Ignore, `invalid command "start"`},
		{"no command", nil, base, Ignore, "no command given"},
		{"bad type", []string{"online", "type_if=bridge"}, base, Ignore, `unknown interface type type_if="bridge"`},
		{"no xenbus path", []string{"online"}, map[string]string{"vif": "vif1.0"}, Ignore, "XENBUS_PATH is not set"},
		{"no vif", []string{"online"}, map[string]string{"XENBUS_PATH": "x"}, Ignore, "vif is not set"},
		{"vif from argument", []string{"online", "vif=vif3.0"}, map[string]string{"XENBUS_PATH": "x"}, Online, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := ParseInvocation(tt.args, env(tt.env))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if inv.Action != tt.action {
				t.Fatalf("action = %v, want %v", inv.Action, tt.action)
			}
		})
	}
}

func TestParseArgumentOverridesEnvironment(t *testing.T) {
	inv, err := ParseInvocation([]string{"online", "vif=vif7.1", "ip=10.137.0.9"}, env(map[string]string{"vif": "vif1.0", "XENBUS_PATH": "p", "ip": "10.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Vif != "vif7.1" || inv.IP != "10.137.0.9" {
		t.Fatalf("got vif %q ip %q, want the arguments' values", inv.Vif, inv.IP)
	}
}

func TestAddTapIsEmulatedNICError(t *testing.T) {
	_, err := ParseInvocation([]string{"add", "type_if=tap"}, env(nil))
	if !errors.Is(err, ErrEmulatedNIC) {
		t.Fatalf("error %v is not ErrEmulatedNIC", err)
	}
}

func TestVifDomid(t *testing.T) {
	good := map[string]int{"vif0.0": 0, "vif12.0": 12, "vif32752.3": 32752, "vif5.10": 5}
	for name, want := range good {
		got, err := VifDomid(name)
		if err != nil || got != want {
			t.Errorf("VifDomid(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	bad := map[string]string{
		"vif1":                      `bad interface name "vif1": want vif<domid>.<devid>`,
		"vif01.0":                   `bad interface name "vif01.0": want vif<domid>.<devid>`,
		"vif1.0;id":                 `bad interface name "vif1.0;id": want vif<domid>.<devid>`,
		"eth0":                      `bad interface name "eth0": want vif<domid>.<devid>`,
		"vif32753.0":                `bad interface name "vif32753.0": domain id 32753 is above 32752`,
		"vif99999999999999999999.0": `bad interface name "vif99999999999999999999.0": domain id 99999999999999999999 is above 32752`,
		"vif1.0\n":                  `bad interface name "vif1.0\n": want vif<domid>.<devid>`,
		"":                          `bad interface name "": want vif<domid>.<devid>`,
	}
	for name, want := range bad {
		_, err := VifDomid(name)
		if err == nil || err.Error() != want {
			t.Errorf("VifDomid(%q) error = %v, want %q", name, err, want)
		}
	}
	if Metric(12) != 32740 || Metric(0) != 32752 {
		t.Errorf("Metric: got %d and %d", Metric(12), Metric(0))
	}
}

func FuzzVifDomid(f *testing.F) {
	for _, s := range []string{"vif0.0", "vif12.3", "vif32753.0", "vif01.0", "eth0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		domid, err := VifDomid(name)
		if err != nil {
			return
		}
		if domid < 0 || domid > MaxDomid || !vifName.MatchString(name) {
			t.Fatalf("accepted %q with domid %d", name, domid)
		}
	})
}

// FuzzParse feeds arbitrary argv (NUL-separated) and environment values:
// Parse never panics, and whatever it accepts as work names a command, an
// interface and a XenStore directory.
func FuzzParse(f *testing.F) {
	f.Add("online\x00type_if=vif", "vif12.0", "backend/vif/12/0")
	f.Add("add\x00type_if=tap", "", "")
	f.Add("type_if=vif\x00offline\x00ip=10.0.0.1", "vif1.0", "/local/domain/0/backend/vif/1/0")
	f.Add("online\x00vif=\x00XENBUS_PATH=", "vif1.0", "x")
	f.Fuzz(func(t *testing.T, argv, vif, xenbusPath string) {
		inv, err := ParseInvocation(strings.Split(argv, "\x00"), env(map[string]string{"vif": vif, "XENBUS_PATH": xenbusPath}))
		if err != nil || inv.Action == Ignore {
			return
		}
		if inv.Vif == "" || inv.XenbusPath == "" || (inv.Command != "online" && inv.Command != "offline") || inv.TypeIf != "vif" {
			t.Fatalf("accepted %+v", inv)
		}
	})
}
