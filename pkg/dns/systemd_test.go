package dns

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/qubes-netvm/qnet/internal/fake/systembus"
)

func TestConnectSystemBus(t *testing.T) {
	tests := []struct {
		name    string
		address func(t testing.TB) string
		wantErr string // empty: must connect
	}{
		{"private bus", systembus.StartBus, ""},
		{"no socket", func(t testing.TB) string { return "unix:path=" + t.TempDir() + "/none.sock" }, "connect to the system bus"},
		{"bus never answers", systembus.SilentBus, "no answer within"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", tt.address(t))
			conn, err := ConnectSystemBus(context.Background(), 300*time.Millisecond)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ConnectSystemBus: %v", err)
				}
				conn.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ConnectSystemBus error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestJobsReachTheManager(t *testing.T) {
	address := systembus.StartBus(t)
	manager := systembus.StartManager(t, address)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
	conn, err := ConnectSystemBus(context.Background(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := ReloadOrTryRestartUnit(ctx, conn, "qubes-firewall.service"); err != nil {
		t.Fatalf("ReloadOrTryRestartUnit: %v", err)
	}
	if err := TryRestartUnit(ctx, conn, "qubes-updates-proxy.service"); err != nil {
		t.Fatalf("TryRestartUnit: %v", err)
	}
	want := []systembus.Job{
		{Method: "ReloadOrTryRestartUnit", Unit: "qubes-firewall.service", Mode: "replace"},
		{Method: "TryRestartUnit", Unit: "qubes-updates-proxy.service", Mode: "replace"},
	}
	got := manager.PendingJobs()
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("jobs = %+v, want %+v", got, want)
	}
}

func TestJobWithoutManagerFails(t *testing.T) {
	address := systembus.StartBus(t)
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", address)
	conn, err := ConnectSystemBus(context.Background(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = ReloadOrTryRestartUnit(context.Background(), conn, "qubes-firewall.service")
	var dbusErr dbus.Error
	if !errors.As(err, &dbusErr) || dbusErr.Name != "org.freedesktop.DBus.Error.ServiceUnknown" || !strings.Contains(err.Error(), "qubes-firewall.service") {
		t.Fatalf("error = %v, want ServiceUnknown naming the unit", err)
	}
}
