package dns

import (
	"testing"

	"github.com/qubes-netvm/qnet/internal/testsupport"
)

// BenchmarkReplace times one chain replacement (one transaction plus the
// read-back) in a sandbox network qube, alternating two rule sets.
func BenchmarkReplace(b *testing.B) {
	_, nft := newNetVM(b)
	sets := [][]Rule{Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.1")), Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.2"))}
	i := 0
	for b.Loop() {
		if err := nft.Replace(sets[i%2]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// BenchmarkMatches times the read-back comparison alone.
func BenchmarkMatches(b *testing.B) {
	_, nft := newNetVM(b)
	rules := Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.1"))
	if err := nft.Replace(rules); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, err := nft.Matches(rules); err != nil || !ok {
			b.Fatal(ok, err)
		}
	}
}
