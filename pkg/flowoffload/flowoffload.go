// Package flowoffload builds the network qube's flow-offload table
// (`inet qubes-nat-accel`): a flowtable over every interface and a forward
// chain that offloads established TCP and UDP flows from client qubes
// (link group 2) to the uplink (group 1), bypassing the slow path.
//
// The table is shared by all vifs and its device list changes as vifs come
// and go, so it is rebuilt whole, atomically, under a file lock that
// serialises concurrent hotplug runs.
package flowoffload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the table, flowtable and chain (the flowtable and the chain share
// a name, as upstream's do).
const (
	TableName     = "qubes-nat-accel"
	FlowtableName = "qubes-accel"
	ChainName     = "qubes-accel"
)

// Link groups Qubes gives client vifs and the uplink.
const (
	ClientGroup = 2
	UplinkGroup = 1
)

// Devices lists the interfaces the flowtable should cover: every name under
// confDir (normally /proc/sys/net/ipv4/conf) except `all`, `default`, the
// excluded one (a vif going away) and names with characters nft could not
// quote safely.
func Devices(confDir, exclude string) ([]string, error) {
	entries, err := os.ReadDir(confDir)
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	var devs []string
	for _, e := range entries {
		name := e.Name()
		if name == "all" || name == "default" || name == exclude || !plainName(name) {
			continue
		}
		devs = append(devs, name)
	}
	slices.Sort(devs)
	return devs, nil
}

func plainName(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_') {
			return false
		}
	}
	return s != ""
}

// Queue adds to c's batch the replacement of the whole table: create it if
// missing, delete it, and create it again with the flowtable over devs and
// the offload chain. The kernel applies the batch atomically, so readers
// never see the table missing, and a failure leaves the old table intact.
func Queue(c *nftables.Conn, devs []string) error {
	table := &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	c.AddTable(table)
	c.DelTable(table)
	c.AddTable(table)
	c.AddFlowtable(&nftables.Flowtable{
		Table:    table,
		Name:     FlowtableName,
		Hooknum:  nftables.FlowtableHookIngress,
		Priority: nftables.FlowtablePriorityFilter,
		Devices:  devs,
	})
	accept := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name:     ChainName,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + 5),
		Policy:   &accept,
	})
	protocols := &nftables.Set{
		Table:     table,
		Anonymous: true,
		Constant:  true,
		KeyType:   nftables.TypeInetProto,
	}
	if err := c.AddSet(protocols, []nftables.SetElement{{Key: []byte{unix.IPPROTO_TCP}}, {Key: []byte{unix.IPPROTO_UDP}}}); err != nil {
		return fmt.Errorf("flow offload protocol set: %w", err)
	}
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: protocols.Name, SetID: protocols.ID},
		&expr.Meta{Key: expr.MetaKeyIIFGROUP, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: groupBytes(ClientGroup)},
		&expr.Meta{Key: expr.MetaKeyOIFGROUP, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: groupBytes(UplinkGroup)},
		&expr.FlowOffload{Name: FlowtableName},
	}})
	c.AddRule(&nftables.Rule{Table: table, Chain: chain, Exprs: []expr.Any{&expr.Counter{}}})
	return nil
}

// groupBytes encodes a link group as the kernel compares it: a u32 in host
// byte order.
func groupBytes(g uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, g)
	return b
}

// Lock serialises rebuilds across concurrent hotplug processes: the device
// list must be read and installed while no other run can install an older
// one. The lock is released when the returned function is called or the
// process exits.
func Lock(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// Present reports whether the table exists and its flowtable lists dev, so
// that an offline can leave a table it has nothing to do with untouched.
func Present(c *nftables.Conn, dev string) (bool, error) {
	table, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up table inet %s: %w", TableName, err)
	}
	fts, err := c.ListFlowtables(table)
	if err != nil {
		return false, fmt.Errorf("list flowtables of inet %s: %w", TableName, err)
	}
	for _, ft := range fts {
		if ft.Name == FlowtableName && slices.Contains(ft.Devices, dev) {
			return true, nil
		}
	}
	return false, nil
}
