package dnat

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/google/nftables"
)

// The chain this package owns, in the base ruleset's table.
const (
	TableName = "qubes"
	ChainName = "dnat-dns"
)

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}

// baseChain is the chain as it must be: a nat chain at the destination-NAT
// priority of prerouting that accepts what no rule matches.
func baseChain() *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name:     ChainName,
		Table:    table,
		Type:     nftables.ChainTypeNAT,
		Hooknum:  nftables.ChainHookPrerouting,
		Priority: nftables.ChainPriorityNATDest,
		Policy:   &accept,
	}
}

// NFT reads and replaces the chain through nftables netlink, in the network
// namespace its connection options select (the caller's by default).
type NFT struct {
	options []nftables.ConnOption
}

// NewNFT returns an NFT whose connections are opened with options, e.g.
// nftables.WithNetNSFd to work in another network namespace.
func NewNFT(options ...nftables.ConnOption) *NFT {
	return &NFT{options: options}
}

// open returns a fresh connection: google/nftables v0.3.0 keeps a failed
// connection's error forever, so each operation gets its own.
func (n *NFT) open() (*nftables.Conn, error) {
	conn, err := nftables.New(append([]nftables.ConnOption{nftables.AsLasting()}, n.options...)...)
	if err != nil {
		return nil, fmt.Errorf("open nftables netlink connection: %w", err)
	}
	return conn, nil
}

// Matches reports whether the kernel's chain holds exactly rules, with the
// right type, hook, priority and policy. The comparison is on expressions,
// not text, so a chain that nft wrote from the same rules matches too. A
// missing table or chain does not match.
func (n *NFT) Matches(rules []Rule) (bool, error) {
	conn, err := n.open()
	if err != nil {
		return false, err
	}
	defer conn.CloseLasting()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("list ip chains: %w", err)
	}
	var have *nftables.Chain
	for _, c := range chains {
		if c.Table.Name == TableName && c.Name == ChainName {
			have = c
			break
		}
	}
	if have == nil || !sameHook(have, baseChain()) {
		return false, nil
	}
	// GetRules answers nil, nil for a chain that vanished since the
	// listing; that reads as "differs" and the caller replaces the chain.
	got, err := conn.GetRules(table, have)
	if err != nil {
		return false, fmt.Errorf("list rules of ip %s %s: %w", TableName, ChainName, err)
	}
	if len(got) != len(rules) {
		return false, nil
	}
	for i, r := range rules {
		if len(got[i].UserData) != 0 || !reflect.DeepEqual(got[i].Exprs, r.Exprs()) {
			return false, nil
		}
	}
	return true, nil
}

func sameHook(have, want *nftables.Chain) bool {
	return have.Type == want.Type &&
		have.Hooknum != nil && *have.Hooknum == *want.Hooknum &&
		have.Priority != nil && *have.Priority == *want.Priority &&
		have.Policy != nil && *have.Policy == *want.Policy
}

// ErrNotApplied means the kernel accepted the transaction but the chain read
// back afterwards does not hold the planned rules.
var ErrNotApplied = errors.New("chain does not hold the planned rules after replacing it")

// Replace installs rules as the whole chain in one transaction: create the
// table and chain if missing, delete the chain, create it anew with its
// hook and rules. Readers therefore see the old chain or the new one, never
// none or two. The result is read back, because google/nftables v0.3.0 can
// miss the error of a batch's last message (google/nftables#329).
func (n *NFT) Replace(rules []Rule) error {
	conn, err := n.open()
	if err != nil {
		return err
	}
	defer conn.CloseLasting()
	conn.AddTable(table)
	// Without hook attributes this succeeds whether or not the chain exists,
	// even when the existing chain's hook differs from ours.
	conn.AddChain(&nftables.Chain{Name: ChainName, Table: table})
	conn.DelChain(&nftables.Chain{Name: ChainName, Table: table})
	chain := conn.AddChain(baseChain())
	for _, r := range rules {
		conn.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: r.Exprs()})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("replace chain ip %s %s: %w", TableName, ChainName, err)
	}
	ok, err := n.Matches(rules)
	if err != nil {
		return fmt.Errorf("verify chain ip %s %s: %w", TableName, ChainName, err)
	}
	if !ok {
		return fmt.Errorf("replace chain ip %s %s: %w", TableName, ChainName, ErrNotApplied)
	}
	return nil
}
