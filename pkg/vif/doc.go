// Package vif is the hotplug tool of a Qubes network qube: vif-route-qubes
// online configures a client qube's backend interface in routed mode and
// offline removes that configuration. Hotplug (hotplug.go) is the entry
// point; the package owns Xen's invocation contract (invocation.go), the
// per-vif lock (lock.go), the inputs read from XenStore and QubesDB
// (inputs.go), route policy (route.go), the plan (plan.go, step.go) and
// its apply with undo (apply.go, kernel.go), the anti-spoofing set
// elements (antispoof.go), the flow-offload table (flowtable*.go), the
// conntrack purge (conntrack.go), the sysctl.d hardening (hardening.go,
// sysctlconf.go), the network hooks (hooks.go), NAT mode's steps (nat.go;
// the namespace is subpackage natns) and the hotplug-status for the
// toolstack (status.go).
//
// A run gathers its inputs, plans an ordered list of steps, and applies
// them. A plan is data: each Step carries a Change (kind, object, address,
// value) that tests compare and --dry-run describes; what only applying
// can learn (the device after a rename, whether IPv6 is on) is the
// documented Facts result of the steps that learn it. Online is
// transactional: each step that changes the kernel returns how to undo
// exactly what it changed, also when it fails half-way, and a failure
// undoes the run's steps in reverse, leaving the kernel as it was. Every
// step tolerates state that is already in place, so online twice
// converges and offline of a vif that never came online changes nothing.
//
// The order of online, and why:
//   - the base ruleset is checked first: without its anti-spoofing sets
//     the vif cannot be protected, so nothing is changed;
//   - the device is found (and renamed) before anything names it;
//   - proxy_arp, the flowtable, NAT mode and hardening configure the
//     device while it is still down;
//   - conntrack is purged and the neighbours and anti-spoofing elements
//     are added BEFORE the link comes up, so that no packet of the client
//     passes before its source address is checked and no flow of an
//     earlier owner of the address survives;
//   - the link comes up, then each address gets its route and the hooks
//     (which expect the route), then the back addresses and proxy_ndp.
//
// Offline removes the anti-spoofing elements first (the client loses its
// right to send at once) together with the vif's flowtable device, in one
// transaction so that the kernel waits for one RCU grace period; then the
// conntrack entries, neighbours, routes (each followed by the hooks),
// back addresses and the NAT namespace.
package vif
