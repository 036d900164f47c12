// Package ifname holds the one rule for network interface names that every
// part of the project checks against, so a name accepted when a vif comes
// online is never refused when it goes offline. It is internal, not part of
// pkg/vif, because pkg/vif/natns checks names too and cannot import its
// parent package.
package ifname

import "fmt"

// MaxLen is the longest interface name the kernel accepts (IFNAMSIZ less
// the terminating NUL); nftables' ifname type holds as many bytes.
const MaxLen = 15

// Check accepts the names the kernel accepts for a new interface, limited
// to printable ASCII: 1 to MaxLen bytes, not "." or "..", without
// whitespace, '/' or ':'. Such a name is also safe in a file name (the NAT
// namespace's under /run/netns).
func Check(name string) error {
	if name == "" || len(name) > MaxLen || name == "." || name == ".." {
		return fmt.Errorf("bad interface name %q: want 1 to %d characters, not \".\" or \"..\"", name, MaxLen)
	}
	for _, r := range name {
		if r <= ' ' || r == '/' || r == ':' || r > '~' {
			return fmt.Errorf("bad interface name %q: character %q not allowed (want printable ASCII without space, '/' or ':')", name, r)
		}
	}
	return nil
}
