package logging

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// XenHotplugLog is where Xen's hotplug helper appends the standard error of
// every hotplug script it runs.
const XenHotplugLog = "/var/log/xen/xen-hotplug.log"

// AppendStderr points this process's standard error (file descriptor 2) at
// the end of path, as Xen's hotplug helper does for every hotplug script
// (`exec 2>>`), so that everything written there from now on — log records,
// the output of hooks, a crash report — lands in the file admins look at.
// The file is created if missing (mode 0644, as the shell would under the
// usual umask); its directory is not, as Xen's helper does not create it
// either. On failure standard error is left as it was.
func AppendStderr(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("append standard error to %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Dup3(int(f.Fd()), 2, 0); err != nil {
		return fmt.Errorf("append standard error to %s: %w", path, err)
	}
	return nil
}
