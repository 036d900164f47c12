package vif

import (
	"net/netip"

	"github.com/vishvananda/netlink"
)

// Kind is what a step changes (or checks).
type Kind string

// The kinds of step, in the terms of the commands upstream runs.
const (
	CheckRuleset   Kind = "check ruleset"        // Object: the base ruleset's table name
	FindLink       Kind = "find link"            // Object: the device
	RenameLink     Kind = "rename link"          // Object: the device; Value: its new name (vifname)
	SetSysctl      Kind = "sysctl"               // Object: the key; Value: the value
	JoinFlowtable  Kind = "join flowtable"       // Object: the device
	NATMode        Kind = "NAT mode"             // Object: the vif; Addr: the visible address; Value: the real one
	Harden         Kind = "harden"               // Object: the vif; Value: the hardening file
	PurgeConntrack Kind = "purge conntrack"      // Object: the addresses
	AddNeighbour   Kind = "add neighbour"        // Object: the device; Addr; Value: the MAC
	AddElements    Kind = "add set elements"     // Object: the addresses
	LinkUp         Kind = "link up"              // Object: the device; Value: its link group
	AddRoute       Kind = "add route"            // Object: the device; Addr; Value: the metric
	RunHooks       Kind = "run hooks"            // Object: the vif; Addr (zero for none); Value: online or offline
	AddAddress     Kind = "add address"          // Object: the device; Addr: the back address
	RemoveElements Kind = "remove set elements"  // Object: the device (its flowtable entry too); Value: the addresses
	DelNeighbour   Kind = "delete neighbour"     // Object: the device; Addr
	DelRoute       Kind = "delete route"         // Object: the device; Addr; Value: the metric
	DelAddress     Kind = "delete address"       // Object: the device; Addr
	RemoveNAT      Kind = "remove NAT namespace" // Object: the namespace
)

// Change is a step as data: what it changes, on which object, with which
// address or value. Plans compare as []Change in tests, and --dry-run
// prints each step's description of it.
type Change struct {
	Kind   Kind
	Object string
	Addr   netip.Addr
	Value  string
	// IfIPv6: the step does nothing when IPv6 turns out disabled on the
	// vif (a fact only applying learns).
	IfIPv6 bool
}

// Changes returns the plan as data.
func Changes(steps []Step) []Change {
	c := make([]Change, len(steps))
	for i, s := range steps {
		c[i] = s.Change
	}
	return c
}

// Facts are what applying learns and later steps depend on. FindLink and
// RenameLink set Link (the device, after any rename) and IPv6 (whether
// IPv6 is enabled on it); NATMode replaces Link with the veth end it
// leaves under the vif's name and clears IPv6. Steps before the first
// of those must not use them.
type Facts struct {
	Link netlink.Link
	IPv6 bool
}
