package dns

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	fakeresolved "github.com/qubes-netvm/qnet/internal/fake/resolved"
	"github.com/qubes-netvm/qnet/internal/fake/systembus"
	"github.com/qubes-netvm/qnet/internal/testsupport"
)

const testBusTimeout = 300 * time.Millisecond

// testConfig returns a Config for a sandbox network qube whose QubesDB
// holds qdb and whose resolv.conf says resolvConf; the system bus is
// whatever DBUS_SYSTEM_BUS_ADDRESS names (tests set it).
func testConfig(t *testing.T, nft *NFT, qdb map[string]string, resolvConf string) Config {
	t.Helper()
	dir := t.TempDir()
	_, socket := testsupport.QubesDB(t, qdb)
	conf := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(conf, []byte(resolvConf), 0o644); err != nil {
		t.Fatal(err)
	}
	return Config{
		QubesDBSocket: socket,
		ResolvConf:    conf,
		FirewallFlag:  filepath.Join(dir, "qubes-firewall"),
		BusTimeout:    testBusTimeout,
		LockPath:      filepath.Join(dir, "lock"),
		LockTimeout:   10 * time.Second,
		NFT:           nft,
		Logger:        slog.New(slog.DiscardHandler),
	}
}

var bothVirtual = map[string]string{
	"/qubes-netvm-primary-dns":   "10.139.1.1",
	"/qubes-netvm-secondary-dns": "10.139.1.2",
}

func noBus(t testing.TB) string { return "unix:path=" + t.TempDir() + "/none" }

// TestPreviewDNSSources checks where the real servers come from in each
// state of the system bus and systemd-resolved.
func TestPreviewDNSSources(t *testing.T) {
	_, nft := newNetVM(t)
	const conf = "# from resolv.conf\nnameserver 192.0.2.10\nnameserver 2001:db8::1\nnameserver 192.0.2.11\n"
	fromConf := testsupport.Addrs("192.0.2.10", "192.0.2.11")
	withBus := func(serve func(t *testing.T, address string)) func(t *testing.T) string {
		return func(t *testing.T) string {
			address := systembus.StartBus(t)
			serve(t, address)
			return address
		}
	}
	tests := []struct {
		name       string
		bus        func(t *testing.T) string
		wantReal   []netip.Addr
		wantSource string // "conf" for the resolv.conf path
		wantErr    bool
	}{
		{"no bus at all", func(t *testing.T) string { return noBus(t) }, fromConf, "conf", false},
		{"bus never answers", func(t *testing.T) string { return systembus.SilentBus(t) }, fromConf, "conf", false},
		{"resolved not running", withBus(func(t *testing.T, a string) {}), fromConf, "conf", false},
		{"resolved answers null", withBus(func(t *testing.T, a string) { fakeresolved.StartNull(t, a) }), fromConf, "conf", false},
		{"resolved global and per-link servers", withBus(func(t *testing.T, a string) {
			fakeresolved.Start(t, a, asFake(v4(2, 9, 9, 9, 9), v4(0, 1, 1, 1, 1), ResolvedServer{Ifindex: 0, Family: 10, Address: make([]byte, 16)}, v4(0, 1, 0, 0, 1)), true)
		}), testsupport.Addrs("1.1.1.1", "1.0.0.1"), "systemd-resolved", false},
		{"resolved per-link servers only", withBus(func(t *testing.T, a string) {
			fakeresolved.Start(t, a, asFake(v4(2, 9, 9, 9, 9), v4(3, 8, 8, 8, 8)), false)
		}), testsupport.Addrs("9.9.9.9", "8.8.8.8"), "systemd-resolved", false},
		{"resolved has no IPv4 server: drop, no fallback", withBus(func(t *testing.T, a string) {
			fakeresolved.Start(t, a, asFake(ResolvedServer{Ifindex: 0, Family: 10, Address: make([]byte, 16)}), true)
		}), nil, "systemd-resolved", false},
		{"resolved never answers", withBus(func(t *testing.T, a string) { fakeresolved.StartSilent(t, a) }), nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", tt.bus(t))
			cfg := testConfig(t, nft, bothVirtual, conf)
			res, err := Preview(context.Background(), cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("Preview = %+v, want an error", res)
				}
				return
			}
			if err != nil {
				t.Fatalf("Preview: %v", err)
			}
			wantSource := tt.wantSource
			if wantSource == "conf" {
				wantSource = cfg.ResolvConf
			}
			if !slices.Equal(res.Real, tt.wantReal) || res.Source != wantSource {
				t.Fatalf("real DNS = %v from %q, want %v from %q", res.Real, res.Source, tt.wantReal, wantSource)
			}
			if !slices.Equal(res.Rules, Plan(res.Virtual, tt.wantReal)) || !res.Changed {
				t.Fatalf("Preview = %+v", res)
			}
		})
	}
}

func TestPreviewQubesDBValues(t *testing.T) {
	_, nft := newNetVM(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", noBus(t))
	tests := []struct {
		name string
		qdb  map[string]string
		want []netip.Addr
	}{
		{"both", bothVirtual, testsupport.Addrs("10.139.1.1", "10.139.1.2")},
		{"primary only", map[string]string{"/qubes-netvm-primary-dns": "10.139.1.1"}, testsupport.Addrs("10.139.1.1")},
		{"secondary only", map[string]string{"/qubes-netvm-secondary-dns": "10.139.1.2"}, testsupport.Addrs("10.139.1.2")},
		{"none", map[string]string{}, nil},
		{"primary with a newline", map[string]string{"/qubes-netvm-primary-dns": "10.139.1.1\n", "/qubes-netvm-secondary-dns": "10.139.1.2"}, testsupport.Addrs("10.139.1.2")},
		{"ipv6", map[string]string{"/qubes-netvm-primary-dns": "fd09:24ef:4179::a8b:1", "/qubes-netvm-secondary-dns": "10.139.1.2"}, testsupport.Addrs("10.139.1.2")},
		{"empty", map[string]string{"/qubes-netvm-primary-dns": "", "/qubes-netvm-secondary-dns": ""}, nil},
		{"injection attempt", map[string]string{"/qubes-netvm-primary-dns": "10.139.1.1 udp dport 53 accept; flush ruleset"}, nil},
		{"not UTF-8", map[string]string{"/qubes-netvm-primary-dns": "\xff\xfe10.139.1.1"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Preview(context.Background(), testConfig(t, nft, tt.qdb, "nameserver 192.0.2.1\n"))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(res.Virtual, tt.want) {
				t.Fatalf("virtual = %v, want %v", res.Virtual, tt.want)
			}
		})
	}
}

func TestPreviewWithoutQubesDBFails(t *testing.T) {
	_, nft := newNetVM(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", noBus(t))
	cfg := testConfig(t, nft, bothVirtual, "")
	cfg.QubesDBSocket = filepath.Join(t.TempDir(), "absent.sock")
	if _, err := Preview(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), cfg.QubesDBSocket) {
		t.Fatalf("Preview error = %v, want one naming %s", err, cfg.QubesDBSocket)
	}
}

// TestSyncSystemdJobs checks the firewall reload and the restarts after a
// change: asked for exactly when the chain is replaced, reload only when
// the qubes-firewall service flag exists, with the unit and mode
// systemctl --no-block try-reload-or-restart uses.
func TestSyncSystemdJobs(t *testing.T) {
	ns, nft := newNetVM(t)
	address := systembus.StartBus(t)
	manager := systembus.StartManager(t, address)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
	cfg := testConfig(t, nft, bothVirtual, "nameserver 192.0.2.1\n")
	cfg.RestartOnChange = []string{"qubes-updates-proxy.service"}
	if err := os.WriteFile(cfg.FirewallFlag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := Sync(context.Background(), cfg)
	if err != nil || !res.Changed {
		t.Fatalf("first Sync = %+v, %v; want a change", res, err)
	}
	want := []systembus.Job{
		{Method: "ReloadOrTryRestartUnit", Unit: "qubes-firewall.service", Mode: "replace"},
		{Method: "TryRestartUnit", Unit: "qubes-updates-proxy.service", Mode: "replace"},
	}
	if got := manager.PendingJobs(); !slices.Equal(got, want) {
		t.Fatalf("jobs after a change = %+v, want %+v", got, want)
	}
	if _, text, _ := listChain(t, ns); !slices.Equal(text, ruleStrings(Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.1")))) {
		t.Fatalf("chain after Sync: %q", text)
	}

	res, err = Sync(context.Background(), cfg)
	if err != nil || res.Changed {
		t.Fatalf("second Sync = %+v, %v; want unchanged", res, err)
	}
	if got := manager.PendingJobs(); len(got) != 0 {
		t.Fatalf("jobs without a change = %+v, want none", got)
	}

	if err := os.Remove(cfg.FirewallFlag); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.ResolvConf, []byte("nameserver 192.0.2.2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if res, err := Sync(context.Background(), cfg); err != nil || !res.Changed {
		t.Fatalf("Sync after a DNS change = %+v, %v", res, err)
	}
	if got := manager.PendingJobs(); !slices.Equal(got, want[1:]) {
		t.Fatalf("jobs without the qubes-firewall flag = %+v, want %+v", got, want[1:])
	}
}

// TestSyncKeepsChainOnError: when resolved hangs, Sync fails and leaves the
// chain as it was rather than rewriting it from resolv.conf.
func TestSyncKeepsChainOnError(t *testing.T) {
	ns, nft := newNetVM(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", noBus(t))
	cfg := testConfig(t, nft, bothVirtual, "nameserver 192.0.2.1\n")
	if _, err := Sync(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	_, before, _ := listChain(t, ns)
	address := systembus.StartBus(t)
	fakeresolved.StartSilent(t, address)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
	if err := os.WriteFile(cfg.ResolvConf, []byte("nameserver 127.0.0.53\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Sync(context.Background(), cfg)
	if err == nil || errors.Is(err, ErrResolvedUnavailable) {
		t.Fatalf("Sync with a silent resolved: error %v, want a timeout", err)
	}
	if _, after, _ := listChain(t, ns); !slices.Equal(after, before) {
		t.Fatalf("chain changed on error: %q -> %q", before, after)
	}
}
