// systemd over the system D-Bus: connecting within a deadline and asking
// the service manager to restart units without waiting for the jobs
// (systemctl --no-block).

package dns

import (
	"context"
	"fmt"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	serviceName = "org.freedesktop.systemd1"
	objectPath  = dbus.ObjectPath("/org/freedesktop/systemd1")
	manager     = "org.freedesktop.systemd1.Manager"
)

// ConnectSystemBus opens a private connection to the system bus (the address
// in DBUS_SYSTEM_BUS_ADDRESS when set). Dialling, authentication and the
// Hello exchange must finish within timeout, so a bus that accepts the
// connection and never answers cannot hang the caller; the connection then
// lives until ctx ends or it is closed.
func ConnectSystemBus(ctx context.Context, timeout time.Duration) (*dbus.Conn, error) {
	connCtx, cancel := context.WithCancel(ctx)
	// godbus closes the transport when the connection's context ends, which
	// unblocks an authentication read that would otherwise wait forever.
	timer := time.AfterFunc(timeout, cancel)
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(connCtx))
	if !timer.Stop() {
		if err == nil {
			conn.Close()
		}
		cancel()
		return nil, fmt.Errorf("connect to the system bus: no answer within %v", timeout)
	}
	if err != nil {
		cancel()
		return nil, fmt.Errorf("connect to the system bus: %w", err)
	}
	return conn, nil
}

// ReloadOrTryRestartUnit asks systemd to reload the unit, or restart it if it
// cannot reload, but only if it is running (systemctl --no-block
// try-reload-or-restart). It returns once systemd has queued the job.
func ReloadOrTryRestartUnit(ctx context.Context, conn *dbus.Conn, unit string) error {
	return startJob(ctx, conn, "ReloadOrTryRestartUnit", unit)
}

// TryRestartUnit asks systemd to restart the unit if it is running
// (systemctl --no-block try-restart). It returns once systemd has queued
// the job.
func TryRestartUnit(ctx context.Context, conn *dbus.Conn, unit string) error {
	return startJob(ctx, conn, "TryRestartUnit", unit)
}

// startJob calls a Manager method taking (unit name, job mode) and
// returning the job's object path, with mode "replace" as systemctl uses.
func startJob(ctx context.Context, conn *dbus.Conn, method, unit string) error {
	var job dbus.ObjectPath
	err := conn.Object(serviceName, objectPath).
		CallWithContext(ctx, manager+"."+method, 0, unit, "replace").Store(&job)
	if err != nil {
		return fmt.Errorf("systemd %s %s: %w", method, unit, err)
	}
	return nil
}
