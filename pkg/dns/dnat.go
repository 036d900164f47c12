package dns

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// ChainName is the DNAT chain this package owns, in the base ruleset's
// tables ip and ip6 netvm.Table.
const ChainName = "dnat-dns"

// table is the IPv4 table, the one every run writes.
var table = ipv4.nftTable()

func (f family) nftTable() *nftables.Table {
	return &nftables.Table{Name: netvm.Table, Family: f.table}
}

// base returns the chain as it must be: a base chain on prerouting at its
// priority that accepts what no rule matches.
func (c chain) base() *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     c.name,
		Table:    c.family.nftTable(),
		Type:     c.typ,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityNATDest + nftables.ChainPriority(c.priority)),
		Policy:   &accept,
	}
}

func (c chain) String() string { return c.family.name + " " + netvm.Table + " " + c.name }

// NFT reads and replaces the chains through nftables netlink, in the
// network namespace netns refers to (an open file descriptor; 0 means the
// caller's).
type NFT struct {
	netns int
}

// NewNFT returns an NFT working in the network namespace netns refers to
// (0: the caller's).
func NewNFT(netns int) *NFT {
	return &NFT{netns: netns}
}

// open returns a fresh connection for reading: google/nftables v0.3.0
// keeps a failed connection's error forever, so each operation gets its own.
func (n *NFT) open() (*nftables.Conn, error) {
	options := []nftables.ConnOption{nftables.AsLasting()}
	if n.netns > 0 {
		options = append(options, nftables.WithNetNSFd(n.netns))
	}
	conn, err := nftables.New(options...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink connection: %w", err)
	}
	return conn, nil
}

// Matches reports whether the kernel holds exactly the chains rules make
// (see Script): each present chain with exactly its rules and the right
// type, hook, priority and policy, and no chain of this package that
// should be absent. The comparison is on expressions, not text, so chains
// that nft wrote from the same rules match too. A missing table or chain
// that should exist does not match.
func (n *NFT) Matches(rules []Rule) (bool, error) {
	conn, err := n.open()
	if err != nil {
		return false, err
	}
	defer conn.CloseLasting()
	for _, c := range chainsOf(rules) {
		same, err := chainMatches(conn, c)
		if err != nil || !same {
			return false, err
		}
	}
	return true, nil
}

// chainMatches compares one chain of the kernel's with c.
func chainMatches(conn *nftables.Conn, c chain) (bool, error) {
	have, err := readChain(conn, c)
	if err != nil {
		return false, err
	}
	if have == nil || !c.present() {
		return have == nil && !c.present(), nil
	}
	if !sameHook(have, c.base()) {
		return false, nil
	}
	// GetRules answers nil, nil for a chain that vanished since it was
	// read; that reads as "differs" and the caller replaces the chain.
	got, err := conn.GetRules(have.Table, have)
	if err != nil {
		return false, fmt.Errorf("list rules of %s: %w", c, err)
	}
	if len(got) != len(c.rules) {
		return false, nil
	}
	for i, r := range c.rules {
		if len(got[i].UserData) != 0 || !reflect.DeepEqual(got[i].Exprs, r.Exprs()) {
			return false, nil
		}
	}
	return true, nil
}

// readChain returns the kernel's chain c names, or nil when it (or its
// table) does not exist. It asks for that one chain only.
func readChain(conn *nftables.Conn, c chain) (*nftables.Chain, error) {
	have, err := conn.ListChain(c.family.nftTable(), c.name)
	// google/nftables v0.3.0 formats the netlink error into a string
	// (%v), so ENOENT is recognised by its text.
	if err != nil && strings.Contains(err.Error(), unix.ENOENT.Error()) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read chain %s: %w", c, err)
	}
	return have, nil
}

func sameHook(have, want *nftables.Chain) bool {
	return have.Type == want.Type &&
		have.Hooknum != nil && *have.Hooknum == *want.Hooknum &&
		have.Priority != nil && *have.Priority == *want.Priority &&
		have.Policy != nil && *have.Policy == *want.Policy
}

// Replace installs rules in one transaction: for each chain that must
// exist, create its table and the chain if missing, delete the chain and
// create it anew with its hook and rules; delete each chain of this
// package that exists but must not. Readers therefore see the old chains
// or the new ones, never none or two, and both families change together.
// The batch goes through nfnl, which reads the kernel's verdict on every
// message (google/nftables v0.3.0 can miss the last one's).
func (n *NFT) Replace(rules []Rule) error {
	conn, err := n.open()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	var names []string
	msgs, err := nfnl.Queued(func(batch *nftables.Conn) error {
		for _, c := range chainsOf(rules) {
			if !c.present() {
				// Only a chain that is there can be deleted without failing
				// the whole batch; what is absent needs no message.
				have, err := readChain(conn, c)
				if err != nil {
					return err
				}
				if have != nil {
					batch.DelChain(&nftables.Chain{Name: c.name, Table: c.family.nftTable()})
					names = append(names, "-"+c.String())
				}
				continue
			}
			t := c.family.nftTable()
			batch.AddTable(t)
			// Without hook attributes this succeeds whether or not the chain
			// exists, even when the existing chain's hook differs from ours.
			batch.AddChain(&nftables.Chain{Name: c.name, Table: t})
			batch.DelChain(&nftables.Chain{Name: c.name, Table: t})
			added := batch.AddChain(c.base())
			for _, r := range c.rules {
				batch.AddRule(&nftables.Rule{Table: t, Chain: added, Exprs: r.Exprs()})
			}
			names = append(names, c.String())
		}
		return nil
	})
	if err != nil {
		return err
	}
	what := strings.Join(names, ", ")
	nc, err := nfnl.Dial(n.netns)
	if err != nil {
		return err
	}
	defer nc.Close()
	if err := nc.Batch(msgs); err != nil {
		return fmt.Errorf("replace chains %s: %w", what, err)
	}
	return nil
}
