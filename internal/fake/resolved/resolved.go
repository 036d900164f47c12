// Package resolved serves a fake systemd-resolved manager object on a
// test bus, so that DNS discovery can be tested against real D-Bus traffic.
package resolved

import (
	"errors"
	"testing"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"

	"github.com/qubes-netvm/qnet/internal/fake/systembus"
)

// The names resolved publishes, spelled here rather than taken from the
// client under test so that the fake checks the client's spelling.
const (
	busName    = "org.freedesktop.resolve1"
	objectPath = dbus.ObjectPath("/org/freedesktop/resolve1")
	manager    = "org.freedesktop.resolve1.Manager"
)

// Server is one entry of the Manager's DNS property, D-Bus type (iiay).
type Server struct {
	Ifindex int32 // 0 for a global server, else its link
	Family  int32 // AF_INET (2) or AF_INET6 (10)
	Address []byte
}

// Resolved is a fake resolved whose DNS property the test controls.
type Resolved struct {
	props *prop.Properties
}

// Start claims org.freedesktop.resolve1 on the bus at address and publishes
// servers as the Manager's DNS property. With emit set, every SetDNS sends
// PropertiesChanged as current systemd does; without it, changes are
// silent, as on older systemd versions.
func Start(t testing.TB, address string, servers []Server, emit bool) *Resolved {
	t.Helper()
	conn := systembus.Connect(t, address)
	mode := prop.EmitFalse
	if emit {
		mode = prop.EmitTrue
	}
	if servers == nil {
		servers = []Server{} // D-Bus has no nil array
	}
	props, err := prop.Export(conn, objectPath, prop.Map{
		manager: {"DNS": {Value: servers, Emit: mode}},
	})
	if err != nil {
		t.Fatalf("export resolved properties: %v", err)
	}
	own(t, conn)
	return &Resolved{props: props}
}

// SetDNS replaces the DNS property.
func (r *Resolved) SetDNS(servers []Server) {
	if servers == nil {
		servers = []Server{}
	}
	r.props.SetMust(manager, "DNS", servers)
}

// StartNull claims org.freedesktop.resolve1 and answers Properties.Get with
// a reply that carries no value at all, which dbus-python hands upstream's
// script as None.
func StartNull(t testing.TB, address string) {
	t.Helper()
	conn := systembus.Connect(t, address)
	if err := conn.Export(nullProperties{}, objectPath, "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	own(t, conn)
}

// StartSilent claims org.freedesktop.resolve1 and never answers
// Properties.Get, like a wedged resolved.
func StartSilent(t testing.TB, address string) {
	t.Helper()
	conn := systembus.Connect(t, address)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	if err := conn.Export(silentProperties{release}, objectPath, "org.freedesktop.DBus.Properties"); err != nil {
		t.Fatal(err)
	}
	own(t, conn)
}

func own(t testing.TB, conn *dbus.Conn) {
	t.Helper()
	reply, err := conn.RequestName(busName, dbus.NameFlagDoNotQueue)
	if err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("own %s: %v (reply %v)", busName, err, reply)
	}
}

type nullProperties struct{}

func (nullProperties) Get(iface, property string) *dbus.Error { return nil }

type silentProperties struct{ release <-chan struct{} }

func (s silentProperties) Get(iface, property string) (dbus.Variant, *dbus.Error) {
	<-s.release
	return dbus.Variant{}, dbus.MakeFailedError(errors.New("fake resolved shut down"))
}
