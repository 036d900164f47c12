package vif

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/qubes-netvm/qnet/internal/nfnl"
)

// joinFlowtable adds the interfaces present that the flowtable does not
// list yet (the vif among them) to its device list, or creates the table
// when it is absent, under the lock that keeps concurrent runs from
// installing a list that misses a vif. Either way the batch holds only
// additions. It returns how to take name out again (or remove the table
// it created).
func (k *Kernel) joinFlowtable(name string) (func() error, error) {
	unlock, err := lockFlowtable(k.opts.LockPath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	c, err := k.netfilter()
	if err != nil {
		return nil, err
	}
	prev, found, err := installedDevices(c)
	if err != nil {
		return nil, err
	}
	if !found {
		if err := k.kernelConfig.FlowtableSupported(); err != nil {
			return nil, err
		}
	}
	devs, err := FlowtableDevices(filepath.Join(k.opts.ProcSys, "net/ipv4/conf"), "")
	if err != nil {
		return nil, err
	}
	if found {
		missing := slices.DeleteFunc(devs, func(d string) bool { return slices.Contains(prev, d) })
		if len(missing) == 0 {
			return nil, nil
		}
		msgs, err := addFlowtableDevices(missing)
		if err != nil {
			return nil, err
		}
		if err := c.Batch(msgs); err != nil {
			return nil, fmt.Errorf("add %v to flowtable %s of inet %s: %w", missing, OffloadFlowtable, OffloadTable, err)
		}
		return func() error {
			unlock, err := lockFlowtable(k.opts.LockPath)
			if err != nil {
				return err
			}
			defer unlock()
			return k.leaveFlowtable(name)
		}, nil
	}
	exists, err := offloadTableExists(c)
	if err != nil {
		return nil, err
	}
	msgs, err := nfnl.Queued(func(q *nftables.Conn) error { return QueueOffloadTable(q, devs, exists) })
	if err != nil {
		return nil, err
	}
	if err := c.Batch(msgs); err != nil {
		return nil, fmt.Errorf("create table inet %s with devices %v: %w", OffloadTable, devs, err)
	}
	return func() error { return k.removeFlowtable(name, devs) }, nil
}

// leaveFlowtable takes name out of the flowtable if it lists it; the
// caller holds the lock.
func (k *Kernel) leaveFlowtable(name string) error {
	msgs, err := k.flowtableRemoval(name)
	if err != nil || len(msgs) == 0 {
		return err
	}
	c, err := k.netfilter()
	if err != nil {
		return err
	}
	return c.Batch(msgs)
}

// flowtableRemoval returns the message taking name out of the flowtable,
// or none when the flowtable (or the table) does not list it. The caller
// holds the lock until the message is sent.
func (k *Kernel) flowtableRemoval(name string) ([]netlink.Message, error) {
	c, err := k.netfilter()
	if err != nil {
		return nil, err
	}
	cur, found, err := installedDevices(c)
	if err != nil || !found || !slices.Contains(cur, name) {
		return nil, err
	}
	m, err := removeFlowtableDevices([]string{name})
	if err != nil {
		return nil, err
	}
	return []netlink.Message{m}, nil
}

// removeFlowtable undoes the creation of the table: if no other run
// added a device since, the table goes; otherwise only name leaves it.
// The kernel itself drops a device that is deleted or leaves the
// namespace (NAT mode moves the vif out), so fewer devices than installed
// still means nobody added one.
func (k *Kernel) removeFlowtable(name string, installed []string) error {
	unlock, err := lockFlowtable(k.opts.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	c, err := k.netfilter()
	if err != nil {
		return err
	}
	cur, found, err := installedDevices(c)
	if err != nil || !found {
		return err
	}
	if slices.ContainsFunc(cur, func(d string) bool { return !slices.Contains(installed, d) }) {
		return k.leaveFlowtable(name)
	}
	msgs, err := nfnl.Queued(func(q *nftables.Conn) error { queueRemoveOffloadTable(q); return nil })
	if err != nil {
		return err
	}
	if err := c.Batch(msgs); err != nil {
		return fmt.Errorf("remove table inet %s: %w", OffloadTable, err)
	}
	return nil
}
