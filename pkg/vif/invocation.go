// This file holds the conventions of a Xen vif hotplug script: it
// decodes how the toolstack invokes one (the command, KEY=VALUE arguments,
// environment, interface name) and decides what that invocation asks for,
// following Xen's vif-common.sh and xen-hotplug-common.sh. lock.go
// serialises the runs for one vif and status.go reports their outcome to
// the toolstack in XenStore.

package vif

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Action is what an invocation asks the script to do.
type Action int

const (
	// Ignore means exit 0 and change nothing (a command for the other
	// interface type, as vif-common.sh does).
	Ignore Action = iota
	// Online configures the vif.
	Online
	// Offline removes this vif's configuration.
	Offline
)

func (a Action) String() string {
	switch a {
	case Online:
		return "online"
	case Offline:
		return "offline"
	}
	return "ignore"
}

// ErrEmulatedNIC is returned for `add type_if=tap`: emulated NICs are served
// by a stub domain in Qubes, never by a network qube.
var ErrEmulatedNIC = errors.New("emulated (tap) network interfaces are served by a stub domain, not by a network qube")

// Invocation is a decoded hotplug call.
type Invocation struct {
	Command    string // online, offline, add or remove
	TypeIf     string // vif or tap
	Vif        string // backend interface name as Xen named it ($vif)
	XenbusPath string // the device's XenStore directory
	IP         string // $ip from the environment or arguments: fallback when XenStore has no ip
	Action     Action
}

// ParseInvocation decodes argv (without the program name) and the environment the way
// vif-common.sh does: the command is the first argument without '=', every
// KEY=VALUE argument overrides the environment variable KEY, type_if
// defaults to vif. The returned error names the offending value.
func ParseInvocation(args []string, getenv func(string) string) (Invocation, error) {
	vars := map[string]string{}
	var command string
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			vars[k] = v
		} else if command == "" {
			command = a
		}
	}
	get := func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return getenv(k)
	}
	inv := Invocation{
		Command:    command,
		TypeIf:     get("type_if"),
		Vif:        get("vif"),
		XenbusPath: get("XENBUS_PATH"),
		IP:         get("ip"),
	}
	switch command {
	case "online", "offline", "add", "remove":
	case "":
		return inv, errors.New("no command given (expected online, offline, add or remove)")
	default:
		return inv, fmt.Errorf("invalid command %q (expected online, offline, add or remove)", command)
	}
	if inv.TypeIf == "" {
		inv.TypeIf = "vif"
	}
	switch inv.TypeIf {
	case "vif":
		switch command {
		case "online":
			inv.Action = Online
		case "offline":
			inv.Action = Offline
		}
	case "tap":
		if command == "add" {
			return inv, fmt.Errorf("add %s: %w", get("INTERFACE"), ErrEmulatedNIC)
		}
		return inv, nil
	default:
		return inv, fmt.Errorf("unknown interface type type_if=%q (expected vif or tap)", inv.TypeIf)
	}
	if inv.Action == Ignore {
		return inv, nil
	}
	if inv.XenbusPath == "" {
		return inv, errors.New("XENBUS_PATH is not set")
	}
	if inv.Vif == "" {
		return inv, errors.New("vif is not set")
	}
	return inv, nil
}

var vifName = regexp.MustCompile(`^vif(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$`)

// VifDomid checks a backend interface name (vif<domid>.<devid>) and returns
// its domain id.
func VifDomid(name string) (int, error) {
	m := vifName.FindStringSubmatch(name)
	if m == nil {
		return 0, fmt.Errorf("bad interface name %q: want vif<domid>.<devid>", name)
	}
	domid, err := strconv.Atoi(m[1])
	if err != nil || domid > MaxDomid {
		return 0, fmt.Errorf("bad interface name %q: domain id %s is above %d", name, m[1], MaxDomid)
	}
	if _, err := strconv.ParseUint(m[2], 10, 31); err != nil {
		return 0, fmt.Errorf("bad interface name %q: device id %s out of range", name, m[2])
	}
	return domid, nil
}

// runByToolstack reports whether the toolstack (libxl, xl devd) started
// this process, as opposed to someone at a terminal: the toolstack always
// passes XENBUS_PATH in the environment (a hand run may use --xenbus-path
// instead) and never gives a hotplug script a terminal. Such a run follows
// Xen's hotplug conventions for its standard error.
func runByToolstack(getenv func(string) string) bool {
	if getenv("XENBUS_PATH") == "" {
		return false
	}
	_, err := unix.IoctlGetTermios(2, unix.TCGETS)
	return err != nil
}
