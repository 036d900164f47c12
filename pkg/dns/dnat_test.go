package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/sandbox"
	"github.com/qubes-netvm/qnet/internal/testsupport"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// newNetVM returns a sandbox network qube (base ruleset loaded, no
// dnat-dns chain) and an NFT working inside it.
func newNetVM(t testing.TB) (*sandbox.NS, *NFT) {
	t.Helper()
	sb := testsupport.New(t, sandbox.Options{})
	h, err := sb.NetVM.Handle()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return sb.NetVM, NewNFT(int(h))
}

// chainJSON is the part of `nft -j list chain` output the tests check.
type chainJSON struct {
	Chain *struct {
		Family, Table, Name, Type, Hook, Policy string
		Handle                                  int
		Prio                                    int
	} `json:"chain"`
	Rule *struct {
		Handle int
	} `json:"rule"`
}

// listChain returns the chain as nft -j reports it, and nft's text lines
// for its rules; ok is false when the chain does not exist.
func listChain(t *testing.T, ns *sandbox.NS) (chain []chainJSON, rules []string, ok bool) {
	t.Helper()
	var doc struct {
		Nftables []chainJSON `json:"nftables"`
	}
	if err := ns.NftJSON(&doc, "list", "chain", "ip", "qubes", "dnat-dns"); err != nil {
		if strings.Contains(err.Error(), "No such file or directory") {
			return nil, nil, false
		}
		t.Fatalf("nft -j list chain: %v", err)
	}
	out, err := ns.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns")
	if err != nil {
		t.Fatalf("nft list chain: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "ip daddr") {
			rules = append(rules, line)
		}
	}
	return doc.Nftables, rules, true
}

func TestReplaceWritesTheChain(t *testing.T) {
	ns, nft := newNetVM(t)
	rules := Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("198.51.100.53"))
	if same, err := nft.Matches(rules); err != nil || same {
		t.Fatalf("Matches before any chain = %v, %v; want false, nil", same, err)
	}
	if err := nft.Replace(rules); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	chain, text, ok := listChain(t, ns)
	if !ok {
		t.Fatal("chain missing after Replace")
	}
	c := chain[1].Chain // [0] is the metainfo object
	if c == nil || c.Family != "ip" || c.Table != "qubes" || c.Type != "nat" || c.Hook != "prerouting" || c.Prio != -100 || c.Policy != "accept" {
		t.Fatalf("chain = %+v, want ip qubes dnat-dns type nat hook prerouting prio -100 policy accept", c)
	}
	want := []string{
		"ip daddr 10.139.1.1 udp dport 53 dnat to 198.51.100.53",
		"ip daddr 10.139.1.1 tcp dport 53 dnat to 198.51.100.53",
		"ip daddr 10.139.1.2 udp dport 53 dnat to 198.51.100.53",
		"ip daddr 10.139.1.2 tcp dport 53 dnat to 198.51.100.53",
	}
	if !slices.Equal(text, want) {
		t.Fatalf("nft lists\n%s\nwant\n%s", strings.Join(text, "\n"), strings.Join(want, "\n"))
	}
	if same, err := nft.Matches(rules); err != nil || !same {
		t.Fatalf("Matches after Replace = %v, %v; want true, nil", same, err)
	}
	drops := Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), nil)
	if same, err := nft.Matches(drops); err != nil || same {
		t.Fatalf("Matches(drop rules) = %v, %v; want false, nil", same, err)
	}
	if err := nft.Replace(drops); err != nil {
		t.Fatalf("Replace with drops: %v", err)
	}
	if _, text, _ := listChain(t, ns); !slices.Equal(text, ruleStrings(drops)) {
		t.Fatalf("nft lists %q after the drop replacement", text)
	}
}

// TestMatchesChainWrittenByNft checks the semantic comparison against
// chains the nft tool wrote: the same rules count as unchanged, any
// difference nft would show counts as changed.
func TestMatchesChainWrittenByNft(t *testing.T) {
	ns, nft := newNetVM(t)
	rules := Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.1", "192.0.2.2"))
	const header = "add table ip qubes\nadd chain ip qubes dnat-dns\ndelete chain ip qubes dnat-dns\n"
	chain := func(hook string, lines ...string) string {
		return header + "table ip qubes {\n chain dnat-dns {\n" + hook + "\n" + strings.Join(lines, "\n") + "\n }\n}\n"
	}
	const hook = "type nat hook prerouting priority dstnat; policy accept;"
	r1u := "ip daddr 10.139.1.1 udp dport 53 dnat to 192.0.2.1"
	r1t := "ip daddr 10.139.1.1 tcp dport 53 dnat to 192.0.2.1"
	r2u := "ip daddr 10.139.1.2 udp dport 53 dnat to 192.0.2.2"
	r2t := "ip daddr 10.139.1.2 tcp dport 53 dnat to 192.0.2.2"
	tests := []struct {
		name   string
		script string
		want   bool
	}{
		{"same rules, as upstream writes them", chain(hook, r1u, r1t, r2u, r2t), true},
		{"same rules, numeric priority", chain("type nat hook prerouting priority -100; policy accept;", r1u, r1t, r2u, r2t), true},
		{"same rules, meta l4proto spelled out", chain(hook,
			"ip daddr 10.139.1.1 meta l4proto udp udp dport 53 dnat to 192.0.2.1", r1t, r2u, r2t), true},
		{"rule order differs", chain(hook, r1t, r1u, r2u, r2t), false},
		{"a rule missing", chain(hook, r1u, r1t, r2u), false},
		{"an extra rule", chain(hook, r1u, r1t, r2u, r2t, "ip daddr 10.139.1.3 udp dport 53 drop"), false},
		{"a counter", chain(hook, "ip daddr 10.139.1.1 udp dport 53 counter dnat to 192.0.2.1", r1t, r2u, r2t), false},
		{"a comment", chain(hook, r1u+` comment "x"`, r1t, r2u, r2t), false},
		{"other target", chain(hook, r1u, r1t, r2u, "ip daddr 10.139.1.2 tcp dport 53 dnat to 192.0.2.3"), false},
		{"other port", chain(hook, r1u, r1t, r2u, "ip daddr 10.139.1.2 tcp dport 5353 dnat to 192.0.2.2"), false},
		{"drop instead of dnat", chain(hook, r1u, r1t, r2u, "ip daddr 10.139.1.2 tcp dport 53 drop"), false},
		{"other priority", chain("type nat hook prerouting priority dstnat + 1; policy accept;", r1u, r1t, r2u, r2t), false},
		{"policy drop", chain("type nat hook prerouting priority dstnat; policy drop;", r1u, r1t, r2u, r2t), false},
		{"output hook", chain("type nat hook output priority -100; policy accept;", r1u, r1t, r2u, r2t), false},
		{"not a base chain", chain("", r1u, r1t, r2u, r2t), false},
		{"no chain", header, false},
		{"no table", "add table ip qubes\ndelete table ip qubes\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testsupport.LoadNft(t, ns, tt.script)
			if same, err := nft.Matches(rules); err != nil || same != tt.want {
				t.Fatalf("Matches = %v, %v; want %v, nil", same, err, tt.want)
			}
		})
	}
}

// TestReplaceOverOtherBaseChain replaces a chain whose hook differs, the
// case where an "ensure it exists" step carrying hook attributes fails.
func TestReplaceOverOtherBaseChain(t *testing.T) {
	ns, nft := newNetVM(t)
	testsupport.LoadNft(t, ns, "table ip qubes {\n chain dnat-dns {\n type nat hook prerouting priority dstnat + 7; policy accept;\n counter\n }\n}\n")
	rules := Plan(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("192.0.2.1"))
	if err := nft.Replace(rules); err != nil {
		t.Fatalf("Replace: %v", err)
	}
	chain, text, _ := listChain(t, ns)
	if c := chain[1].Chain; c.Prio != -100 || !slices.Equal(text, ruleStrings(rules)) {
		t.Fatalf("after Replace: chain %+v rules %q", c, text)
	}
}

// TestReplaceRejectedIsReported makes the kernel refuse the transaction (a
// chain another chain jumps to cannot be deleted): Replace must say so from
// the kernel's own answer, and the ruleset must be as it was.
func TestReplaceRejectedIsReported(t *testing.T) {
	ns, nft := newNetVM(t)
	testsupport.LoadNft(t, ns, "table ip qubes {\n chain dnat-dns {\n counter\n }\n chain user {\n jump dnat-dns\n }\n}\n")
	before, err := ns.Exec("nft", "-j", "list", "table", "ip", "qubes")
	if err != nil {
		t.Fatal(err)
	}
	err = nft.Replace(Plan(testsupport.Addrs("10.139.1.1"), testsupport.Addrs("192.0.2.1")))
	if err == nil || !strings.Contains(err.Error(), "ip qubes dnat-dns") {
		t.Fatalf("Replace over a chain in use = %v, want the kernel's refusal naming the chain", err)
	}
	after, err := ns.Exec("nft", "-j", "list", "table", "ip", "qubes")
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("a refused Replace changed table ip qubes:\nbefore %s\nafter  %s", before, after)
	}
}

// TestReplaceIsAtomic replaces the chain 200 times, alternating between rule
// sets of different lengths, while readers list it: a netlink reader and
// the nft tool. Neither may ever find the chain missing, empty, doubled or
// holding a mix of both sets.
func TestReplaceIsAtomic(t *testing.T) {
	ns, nft := newNetVM(t)
	sets := [][]Rule{
		Plan(testsupport.Addrs("10.139.1.1", "10.139.1.2"), testsupport.Addrs("192.0.2.1", "192.0.2.2")),
		Plan(testsupport.Addrs("10.139.1.1"), nil),
	}
	if err := nft.Replace(sets[0]); err != nil {
		t.Fatal(err)
	}
	valid := map[string]bool{}
	for _, s := range sets {
		valid[strings.Join(ruleStrings(s), "\n")] = true
	}
	h, err := ns.Handle()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()

	var stop atomic.Bool
	var wg sync.WaitGroup
	var netlinkReads, nftReads atomic.Int64
	failures := make(chan string, 100)
	wg.Add(2)
	go func() { // netlink reader: one chain dump, one rule dump, within one ruleset generation
		defer wg.Done()
		for !stop.Load() {
			// Two dumps are one view only if no transaction committed in
			// between (nft itself checks the generation the same way).
			genBefore, err := generation(h)
			if err != nil {
				failures <- err.Error()
				return
			}
			conn, err := nftables.New(nftables.WithNetNSFd(int(h)))
			if err != nil {
				failures <- err.Error()
				return
			}
			chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
			if err != nil {
				failures <- err.Error()
				return
			}
			var found []*nftables.Chain
			for _, c := range chains {
				if c.Table.Name == netvm.Table && c.Name == ChainName {
					found = append(found, c)
				}
			}
			var rules []*nftables.Rule
			if len(found) == 1 {
				if rules, err = conn.GetRules(table, found[0]); err != nil {
					failures <- err.Error()
					return
				}
			}
			if genAfter, err := generation(h); err != nil || genAfter != genBefore {
				continue // a replacement committed mid-read: not one view
			}
			if len(found) != 1 {
				failures <- fmt.Sprintf("netlink reader found %d dnat-dns chains", len(found))
				continue
			}
			if n := len(rules); n != len(sets[0]) && n != len(sets[1]) {
				failures <- fmt.Sprintf("netlink reader found %d rules", n)
			}
			netlinkReads.Add(1)
		}
	}()
	go func() { // nft reader: nft itself retries until its view is consistent
		defer wg.Done()
		for !stop.Load() {
			out, err := ns.Exec("nft", "list", "chain", "ip", "qubes", "dnat-dns")
			if err != nil {
				failures <- fmt.Sprintf("nft list chain: %v", err)
				continue
			}
			var rules []string
			for _, line := range strings.Split(string(out), "\n") {
				if line = strings.TrimSpace(line); strings.HasPrefix(line, "ip daddr") {
					rules = append(rules, line)
				}
			}
			if !valid[strings.Join(rules, "\n")] {
				failures <- fmt.Sprintf("nft listed %q", rules)
			}
			nftReads.Add(1)
		}
	}()
	for i := range 200 {
		if err := nft.Replace(sets[(i+1)%2]); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("replacement %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
	t.Logf("reads during 200 replacements: %d over netlink, %d by nft", netlinkReads.Load(), nftReads.Load())
	if netlinkReads.Load() == 0 || nftReads.Load() == 0 {
		t.Fatal("a reader never completed a read")
	}
}

// generation asks the kernel for the ruleset's generation id, which every
// committed nftables transaction increments.
func generation(h netns.NsHandle) (uint32, error) {
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(h)})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	replies, err := conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("get ruleset generation: %w", err)
	}
	for _, m := range replies {
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("get ruleset generation: no id in the reply")
}
