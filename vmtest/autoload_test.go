//go:build vmtest

package vmtest

import (
	"slices"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nfnl"
)

// TestAutoloadFailureIsDetected sends, for each module, a batch in which one
// message makes the kernel autoload that module and the last message fails.
// It must run first in a fresh boot (this file sorts first), so that no
// module it names is loaded yet. It proves that the module loads on first
// use, that the kernel rolls the batch back, and that nfnl.Batch reports
// the failure (google/nftables' Flush can lose it: issue #329); then that
// the same batch without the failing message is applied.
func TestAutoloadFailureIsDetected(t *testing.T) {
	const tableName = "qnt-autoload"
	inet := &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
	ip := &nftables.Table{Name: tableName, Family: nftables.TableFamilyIPv4}
	accept := nftables.ChainPolicyAccept
	flowtable := func(c *nftables.Conn) {
		c.AddFlowtable(&nftables.Flowtable{Table: inet, Name: "ft",
			Hooknum: nftables.FlowtableHookIngress, Priority: nftables.FlowtablePriorityFilter})
	}
	plainChain := func(c *nftables.Conn, t *nftables.Table) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: "c", Table: t})
	}
	natChain := func(c *nftables.Conn, hook *nftables.ChainHook, prio *nftables.ChainPriority) *nftables.Chain {
		return c.AddChain(&nftables.Chain{Name: "nat", Table: ip, Type: nftables.ChainTypeNAT,
			Hooknum: hook, Priority: prio, Policy: &accept})
	}
	// missingChainRule fails with ENOENT: its chain does not exist.
	missingChainRule := func(t *nftables.Table) func(c *nftables.Conn) {
		return func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{Table: t, Chain: &nftables.Chain{Name: "missing", Table: t},
				Exprs: []expr.Any{&expr.Counter{}}})
		}
	}
	tests := []struct {
		module string
		table  *nftables.Table
		// queue adds to the batch the objects whose first use loads module
		// (unless failing does).
		queue func(c *nftables.Conn)
		// failing adds the batch's last message, which fails.
		failing func(c *nftables.Conn)
	}{
		{"nft_ct", inet, func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{Table: inet, Chain: plainChain(c, inet), Exprs: []expr.Any{
				&expr.Ct{Register: 1, Key: expr.CtKeySTATE}}})
		}, missingChainRule(inet)},
		{"nf_flow_table_inet", inet, flowtable, missingChainRule(inet)},
		{"nft_flow_offload", inet, func(c *nftables.Conn) {
			flowtable(c)
			c.AddRule(&nftables.Rule{Table: inet, Chain: plainChain(c, inet), Exprs: []expr.Any{
				&expr.FlowOffload{Name: "ft"}}})
		}, missingChainRule(inet)},
		{"nft_chain_nat", ip, func(c *nftables.Conn) {
			natChain(c, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest)
		}, missingChainRule(ip)},
		{"nft_masq", ip, func(c *nftables.Conn) {
			ch := natChain(c, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource)
			c.AddRule(&nftables.Rule{Table: ip, Chain: ch, Exprs: []expr.Any{&expr.Masq{}}})
		}, missingChainRule(ip)},
		// Here the message that loads the module is itself the one that
		// fails: numgen rejects a modulus of 0 once its module is loaded.
		{"nft_numgen", inet, func(c *nftables.Conn) { plainChain(c, inet) }, func(c *nftables.Conn) {
			c.AddRule(&nftables.Rule{Table: inet, Chain: &nftables.Chain{Name: "c", Table: inet}, Exprs: []expr.Any{
				&expr.Numgen{Register: 1, Type: unix.NFT_NG_INCREMENTAL, Modulus: 0}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.module, func(t *testing.T) {
			if moduleLoaded(t, tt.module) {
				t.Fatalf("module %s is already loaded: this test must run first after boot", tt.module)
			}
			ns := newNamespace(t, "autoload")
			c, err := nfnl.Dial(ns.fd)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			batch := func(withFailing bool) error {
				msgs, err := nfnl.Queued(func(q *nftables.Conn) error {
					q.AddTable(tt.table)
					tt.queue(q)
					if withFailing {
						tt.failing(q)
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				return c.Batch(msgs)
			}

			err = batch(true)
			if err == nil {
				t.Fatal("nfnl.Batch returned nil for a batch whose last message fails")
			}
			t.Logf("the failure, as reported: %v", err)
			if !moduleLoaded(t, tt.module) {
				t.Errorf("module %s was not autoloaded", tt.module)
			}
			if names := tableNames(t, ns); slices.Contains(names, tt.table.Name) {
				t.Errorf("nft lists table %s after a failed batch; the kernel should have rolled it back", tt.table.Name)
			}

			if err := batch(false); err != nil {
				t.Fatalf("the batch without its failing message: %v", err)
			}
			if names := tableNames(t, ns); !slices.Contains(names, tt.table.Name) {
				t.Errorf("nft lists tables %v after a successful batch, want %s among them", names, tt.table.Name)
			}
		})
	}
}

// tableNames lists the namespace's nftables tables, as nft sees them.
func tableNames(t *testing.T, ns namespace) []string {
	t.Helper()
	var out struct {
		Nftables []struct {
			Table *struct{ Name string } `json:"table"`
		} `json:"nftables"`
	}
	ns.nftJSON(t, &out, "list", "tables")
	var names []string
	for _, o := range out.Nftables {
		if o.Table != nil {
			names = append(names, o.Table.Name)
		}
	}
	return names
}
