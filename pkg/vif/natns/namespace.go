package natns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/qubes-netvm/qnet/internal/nsthread"
)

// netnsDir is where iproute2 keeps named network namespaces.
const netnsDir = "/run/netns"

// createNamed creates a network namespace named the way `ip netns add`
// names it: an empty file under /run/netns with the namespace bind-mounted
// onto it, /run/netns being a shared mount so that the binding propagates to
// mount namespaces made later (`ip netns exec` makes one). init runs on a
// thread inside the new namespace before the binding. On failure nothing is
// left behind.
//
// netns.NewNamed is not used: it leaves /run/netns unshared and the calling
// thread inside the new namespace.
func createNamed(name string, init func() error) error {
	if err := shareNetnsDir(); err != nil {
		return err
	}
	path := namespacePath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return fmt.Errorf("create namespace file: %w", err)
	}
	if err := f.Close(); err != nil {
		return errors.Join(fmt.Errorf("create namespace file: %w", err), removeNamed(name))
	}

	if err := nsthread.Run(func() error { return unshareAndBind(path, init) }); err != nil {
		return errors.Join(fmt.Errorf("create namespace %s: %w", name, err), removeNamed(name))
	}
	return nil
}

// unshareAndBind moves the calling (locked) thread into a new network
// namespace, runs init there and binds the namespace onto path.
func unshareAndBind(path string, init func() error) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare network namespace: %w", err)
	}
	if err := init(); err != nil {
		return err
	}
	self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind mount %s on %s: %w", self, path, err)
	}
	return nil
}

// shareNetnsDir creates /run/netns and makes it a shared mount, binding it
// onto itself first when it is not a mount point yet, as iproute2 does.
func shareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind mount %s onto itself: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	return nil
}

// removeNamed deletes a named namespace as `ip netns delete` does: detach
// the binding, remove the file. The namespace itself dies with its last
// reference. Parts already gone count as removed.
func removeNamed(name string) error {
	path := namespacePath(name)
	// EINVAL: the file exists but nothing is mounted on it.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove namespace file: %w", err)
	}
	return nil
}

// isNamespace tells whether the open file is a namespace (nsfs) rather than
// the plain file a namespace is bound onto.
func isNamespace(h netns.NsHandle) bool {
	var st unix.Statfs_t
	return unix.Fstatfs(int(h), &st) == nil && st.Type == unix.NSFS_MAGIC
}
