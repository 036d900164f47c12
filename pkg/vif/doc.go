// Package vif is the hotplug tool of a Qubes network qube: vif-route-qubes
// online configures a client qube's backend interface in routed mode and
// offline removes that configuration. It owns, file by file:
//
//   - hotplug.go: the one entry point (Hotplug): the per-vif lock, the
//     XenStore and QubesDB connections, the Xen hotplug log and the status
//     the toolstack waits for;
//   - invocation.go, lock.go, status.go: Xen's invocation contract (argv,
//     environment, which commands mean what), the per-vif lock, the
//     hotplug-status keys;
//   - inputs.go: what a run reads (XenStore, QubesDB, sysctls);
//   - route.go: route policy (MaxDomid, Metric);
//   - plan.go, step.go: the ordered steps, as data (Change) and as code;
//   - apply.go, kernel.go: applying the steps with undo, the kernel handles;
//   - antispoof.go: the vif's elements in the base ruleset's sets;
//   - flowtable*.go: the shared flow-offload table and its device list;
//   - conntrack.go: forgetting the tracked connections of the vif's
//     addresses;
//   - hardening.go, sysctlconf.go: the sysctl.d hardening QubesDB can ask
//     for;
//   - hooks.go: the user's network hooks;
//   - nat.go: NAT mode's steps (the namespace itself is subpackage natns).
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
