// This file builds the network qube's flow-offload table
// (`inet qubes-nat-accel`): a flowtable over every interface and a forward
// chain that offloads established TCP and UDP flows from client qubes
// (link group netvm.ClientGroup) to the uplink (netvm.UplinkGroup), bypassing the
// slow path.
//
// The table is shared by all vifs. It is created once, when absent; after
// that a vif coming online is added to the flowtable's device list (an
// addition: the kernel waits for no RCU grace period) and a vif going
// away is taken out of it, under a file lock that serialises concurrent
// hotplug runs so that the list stays exactly the interfaces present.

package vif

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/lockfile"
	"github.com/qubes-netvm/qnet/internal/nfnl"
	"github.com/qubes-netvm/qnet/pkg/netvm"
)

// Names of the flow-offload table, its flowtable and its chain (the
// flowtable and the chain share a name, as upstream's do).
const (
	OffloadTable     = "qubes-nat-accel"
	OffloadFlowtable = "qubes-accel"
	OffloadChain     = "qubes-accel"
)

// FlowtableDevices lists the interfaces the flowtable should cover: every
// name under confDir (normally /proc/sys/net/ipv4/conf) except `all`,
// `default`, the excluded one (a vif going away) and names with characters
// outside [A-Za-z0-9._]. Netlink could carry any name, but upstream's
// script leaves those out (it writes the list into nft's syntax), and the
// kernel state must be the one upstream leaves.
func FlowtableDevices(confDir, exclude string) ([]string, error) {
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

// plainName reports whether s is made of [A-Za-z0-9._] only.
func plainName(s string) bool {
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '.' || r == '_') {
			return false
		}
	}
	return s != ""
}

// QueueOffloadTable adds to c's batch the creation of the whole table: the flowtable
// over devs and the offload chain. With replace set the table is first
// created if missing and deleted, so that an existing one (without the
// flowtable, or from someone else) is replaced atomically; without it the
// batch holds additions only, for a table that does not exist yet.
func QueueOffloadTable(c *nftables.Conn, devs []string, replace bool) error {
	table := &nftables.Table{Name: OffloadTable, Family: nftables.TableFamilyINet}
	if replace {
		c.AddTable(table)
		c.DelTable(table)
	}
	c.AddTable(table)
	c.AddFlowtable(&nftables.Flowtable{
		Table:    table,
		Name:     OffloadFlowtable,
		Hooknum:  nftables.FlowtableHookIngress,
		Priority: nftables.FlowtablePriorityFilter,
		Devices:  devs,
	})
	accept := nftables.ChainPolicyAccept
	chain := c.AddChain(&nftables.Chain{
		Name:     OffloadChain,
		Table:    table,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookForward,
		Priority: nftables.ChainPriorityRef(*nftables.ChainPriorityFilter + 5),
		Policy:   &accept,
	})
	protocols := &nftables.Set{
		// The id only names the set within this batch; fixing it keeps the
		// batch identical from run to run.
		ID:        1,
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
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: groupBytes(netvm.ClientGroup)},
		&expr.Meta{Key: expr.MetaKeyOIFGROUP, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: groupBytes(netvm.UplinkGroup)},
		&expr.FlowOffload{Name: OffloadFlowtable},
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

// flowtableLockWait bounds how long a run waits for others' device-list
// changes; each holds the lock for a few milliseconds.
const flowtableLockWait = 30 * time.Second

// lockFlowtable serialises device-list changes across concurrent hotplug
// processes: the list must be read and changed while no other run can
// install an older one.
func lockFlowtable(path string) (unlock func(), err error) {
	return lockfile.Acquire(context.Background(), path, flowtableLockWait, nil)
}

// installedDevices returns the devices the kernel's flowtable covers (found is
// false when the table or its flowtable does not exist). It asks for the
// one flowtable by name: google/nftables v0.3.0's dump-based listing does
// not read these back reliably.
func installedDevices(c *nfnl.Conn) (devs []string, found bool, err error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: nftables.NFTA_FLOWTABLE_TABLE, Data: []byte(OffloadTable + "\x00")},
		{Type: nftables.NFTA_FLOWTABLE_NAME, Data: []byte(OffloadFlowtable + "\x00")},
	})
	if err != nil {
		return nil, false, err
	}
	replies, found, err := c.Get(nfnl.Request(nfnl.SubsysNftables, nftables.NFT_MSG_GETFLOWTABLE, unix.NFPROTO_INET, 0, attrs))
	if err != nil {
		return nil, false, fmt.Errorf("read flowtable %s of inet %s: %w", OffloadFlowtable, OffloadTable, err)
	}
	if !found {
		return nil, false, nil
	}
	for _, m := range replies {
		devs, err := parseDevices(m)
		if err != nil {
			return nil, false, fmt.Errorf("decode flowtable %s: %w", OffloadFlowtable, err)
		}
		slices.Sort(devs)
		return devs, true, nil
	}
	return nil, false, fmt.Errorf("read flowtable %s of inet %s: empty reply", OffloadFlowtable, OffloadTable)
}

// offloadTableExists reports whether table inet qubes-nat-accel exists.
func offloadTableExists(c *nfnl.Conn) (bool, error) {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_TABLE_NAME, Data: []byte(OffloadTable + "\x00")}})
	if err != nil {
		return false, err
	}
	_, found, err := c.Get(nfnl.Request(nfnl.SubsysNftables, unix.NFT_MSG_GETTABLE, unix.NFPROTO_INET, 0, attrs))
	if err != nil {
		return false, fmt.Errorf("read table inet %s: %w", OffloadTable, err)
	}
	return found, nil
}

// addFlowtableDevices is the message that adds devs to the existing flowtable's
// device list (devices already listed are left as they are).
func addFlowtableDevices(devs []string) ([]netlink.Message, error) {
	return nfnl.Queued(func(c *nftables.Conn) error {
		c.AddFlowtable(&nftables.Flowtable{
			Table:    &nftables.Table{Name: OffloadTable, Family: nftables.TableFamilyINet},
			Name:     OffloadFlowtable,
			Hooknum:  nftables.FlowtableHookIngress,
			Priority: nftables.FlowtablePriorityFilter,
			Devices:  devs,
		})
		return nil
	})
}

// removeFlowtableDevices is the message that takes devs (each of them listed) out
// of the flowtable's device list, leaving the flowtable and the others.
// google/nftables v0.3.0's DelFlowtable cannot name devices, so it is
// encoded here.
func removeFlowtableDevices(devs []string) (netlink.Message, error) {
	attrs, err := nfnl.Encode(func(ae *netlink.AttributeEncoder) {
		ae.String(nftables.NFTA_FLOWTABLE_TABLE, OffloadTable)
		ae.String(nftables.NFTA_FLOWTABLE_NAME, OffloadFlowtable)
		ae.Nested(nftables.NFTA_FLOWTABLE_HOOK, func(hook *netlink.AttributeEncoder) error {
			hook.Nested(nftables.NFTA_FLOWTABLE_DEVS, func(list *netlink.AttributeEncoder) error {
				for _, d := range devs {
					list.String(nftables.NFTA_DEVICE_NAME, d)
				}
				return nil
			})
			return nil
		})
	})
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encode removal of %v from flowtable %s: %w", devs, OffloadFlowtable, err)
	}
	return nfnl.Request(nfnl.SubsysNftables, nftables.NFT_MSG_DELFLOWTABLE, unix.NFPROTO_INET, 0, attrs), nil
}

// parseDevices finds NFTA_FLOWTABLE_HOOK / NFTA_FLOWTABLE_HOOK_DEVS /
// NFTA_DEVICE_NAME in a flowtable message's attributes.
func parseDevices(b []byte) ([]string, error) {
	var devs []string
	err := walk(b, nftables.NFTA_FLOWTABLE_HOOK, func(hook []byte) error {
		return walk(hook, nftables.NFTA_FLOWTABLE_DEVS, func(list []byte) error {
			ad, err := netlink.NewAttributeDecoder(list)
			if err != nil {
				return err
			}
			for ad.Next() {
				if ad.Type() == nftables.NFTA_DEVICE_NAME {
					devs = append(devs, ad.String())
				}
			}
			return ad.Err()
		})
	})
	return devs, err
}

// walk calls fn with the payload of every attribute of type typ in b.
func walk(b []byte, typ uint16, fn func([]byte) error) error {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return err
	}
	for ad.Next() {
		if ad.Type() == typ {
			if err := fn(ad.Bytes()); err != nil {
				return err
			}
		}
	}
	return ad.Err()
}

// queueRemoveOffloadTable queues the deletion of the whole table in c's batch.
func queueRemoveOffloadTable(c *nftables.Conn) {
	c.DelTable(&nftables.Table{Name: OffloadTable, Family: nftables.TableFamilyINet})
}
