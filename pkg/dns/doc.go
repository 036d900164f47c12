// Package dns is the qubes-setup-dnat-to-ns tool: it points the virtual DNS
// addresses that client qubes use at the network qube's real DNS servers.
// It owns finding those servers (systemd-resolved over D-Bus, resolv.conf as
// the fallback: resolved.go, resolvconf.go), planning the rules of chain
// dnat-dns in tables ip and ip6 qubes (plan.go) and replacing the chains in
// one nftables transaction when they differ from the kernel's (dnat.go),
// one run at a time (lock.go), the unit restarts after a change (sync.go,
// systemd.go), and the watch service that runs again whenever the DNS may
// have changed (watch*.go).
package dns
