// Package netvm names what both tools share with the network qube's base
// ruleset and with each other: the nftables table they write into and the
// interface groups that tell client vifs from the uplink.
package netvm

// Table is the name of the base ruleset's tables (ip qubes, ip6 qubes,
// inet qubes) into which both tools add their chains and sets.
const Table = "qubes"

// Interface groups the base ruleset matches with iifgroup and oifgroup.
const (
	UplinkGroup = 1 // the network qube's own uplink
	ClientGroup = 2 // a client qube's vif
)
