package vifroute

import (
	"fmt"
	"path/filepath"
	"slices"

	"github.com/qubes-netvm/qnet/pkg/flowoffload"
	"github.com/qubes-netvm/qnet/pkg/nftverify"
)

// replaceFlowtable rebuilds the flow-offload table from the interfaces
// present (without name when it is leaving), under the lock that keeps
// concurrent runs from installing an older list, and returns how to put
// the table back as it was.
func (k *Kernel) replaceFlowtable(name string, leaving bool) (func() error, error) {
	unlock, err := flowoffload.Lock(k.opts.LockPath)
	if err != nil {
		return nil, err
	}
	defer unlock()
	prev, existed, err := flowoffload.Installed()
	if err != nil {
		return nil, err
	}
	exclude := ""
	if leaving {
		if !slices.Contains(prev, name) {
			return nil, nil
		}
		exclude = name
	}
	devs, err := flowoffload.Devices(filepath.Join(k.opts.ProcSys, "net/ipv4/conf"), exclude)
	if err != nil {
		return nil, err
	}
	if existed && slices.Equal(prev, devs) {
		return nil, nil
	}
	if err := k.installFlowtable(devs); err != nil {
		return nil, err
	}
	if leaving {
		return nil, nil
	}
	return func() error { return k.restoreFlowtable(name, devs, prev, existed) }, nil
}

func (k *Kernel) installFlowtable(devs []string) error {
	c, err := k.nft()
	if err != nil {
		return err
	}
	if err := flowoffload.Queue(c, devs); err != nil {
		return err
	}
	if err := nftverify.Flush(c, func() error { return flowoffload.Verify(devs) }); err != nil {
		return fmt.Errorf("replace table inet %s with devices %v: %w", flowoffload.TableName, devs, err)
	}
	return nil
}

// restoreFlowtable undoes a rebuild. If no other run rebuilt the table
// since, the previous table (or none) comes back; otherwise only name is
// taken out again, unless it was listed before this run.
func (k *Kernel) restoreFlowtable(name string, installed, prev []string, existed bool) error {
	unlock, err := flowoffload.Lock(k.opts.LockPath)
	if err != nil {
		return err
	}
	defer unlock()
	cur, found, err := flowoffload.Installed()
	if err != nil || !found {
		return err
	}
	switch {
	case slices.Equal(cur, installed) && !existed:
		c, err := k.nft()
		if err != nil {
			return err
		}
		flowoffload.Remove(c)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("remove table inet %s: %w", flowoffload.TableName, err)
		}
		return nil
	case slices.Equal(cur, installed):
		return k.installFlowtable(prev)
	case slices.Contains(cur, name) && !slices.Contains(prev, name):
		return k.installFlowtable(slices.DeleteFunc(slices.Clone(cur), func(d string) bool { return d == name }))
	}
	return nil
}
