package testsupport

import "net/netip"

// Addrs parses each string as an address, panicking on a typo in a test
// table.
func Addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}
