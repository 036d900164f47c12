//go:build vmtest

package vmtest

import (
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The SELinux boot of run.sh (security=selinux on the command line) puts
// Debian's reference policy, compiled, here, and the takeover script and
// its list under /qnet/packaging as in the repository.
const (
	policyFile = "/qnet/selinux/policy"
	selRoot    = "/sel"
	selinuxfs  = "/sys/fs/selinux"
)

// takeoverPaths are upstream's files with the contexts a Qubes template
// gives them; their directories' contexts differ (see selinuxTree), so a
// file created there by a plain copy comes out wrong.
var takeoverPaths = map[string]string{
	"/etc/xen/scripts/vif-route-qubes":              "system_u:object_r:initrc_exec_t:s0",
	"/usr/lib/qubes/qubes-setup-dnat-to-ns":         "system_u:object_r:bin_t:s0",
	"/etc/NetworkManager/dispatcher.d/qubes-nmhook": "system_u:object_r:NetworkManager_initrc_exec_t:s0",
}

// selinuxTree is the chroot the takeover runs in: directories and files
// with their contexts, as the reference policy's file contexts (and Qubes'
// for /etc/xen/scripts/*) label them. Contents: "@path" copies a file of
// the VM, anything else is the text.
var selinuxTree = []struct{ path, ctx, content string }{
	{"/bin", "bin_t", ""},
	{"/bin/busybox", "shell_exec_t", "@/bin/busybox"},
	// Entrypoints of the domains on the way to the package script's:
	// busybox run as init (init_t), then as dpkg (dpkg_t).
	{"/steps", "bin_t", ""},
	{"/steps/init", "bin_t", ""},
	{"/steps/init/busybox", "init_exec_t", "@/bin/busybox"},
	{"/steps/dpkg", "bin_t", ""},
	{"/steps/dpkg/busybox", "dpkg_exec_t", "@/bin/busybox"},
	// ... and as xl devd (xend_t), which runs the hotplug scripts.
	{"/steps/xend", "bin_t", ""},
	{"/steps/xend/busybox", "xend_exec_t", "@/bin/busybox"},
	{"/usr", "usr_t", ""},
	{"/usr/bin", "bin_t", ""},
	{"/usr/bin/chcon", "bin_t", "@/usr/sbin/chcon"},
	{"/usr/sbin", "bin_t", ""},
	{"/usr/sbin/selinuxenabled", "bin_t", "@/usr/sbin/selinuxenabled"},
	{"/usr/bin/runcon", "bin_t", "@/usr/sbin/runcon"},
	{"/usr/lib", "lib_t", ""},
	{"/usr/lib/qubes", "bin_t", ""},
	{"/usr/lib/qubes/qubes-setup-dnat-to-ns", "bin_t", "#!/bin/sh\n# upstream dnat 1\n"},
	{"/usr/libexec", "bin_t", ""},
	{"/usr/libexec/qnet", "bin_t", ""},
	{"/usr/libexec/qnet/qnet-takeover", "bin_t", "@/qnet/packaging/rpm/qnet-takeover"},
	{"/usr/libexec/qnet/takeover.list", "bin_t", "@/qnet/packaging/takeover.list"},
	{"/usr/libexec/qnet/vif-route-qubes", "bin_t", hotplugProbe + "# qnet\n"},
	{"/usr/libexec/qnet/qubes-setup-dnat-to-ns", "bin_t", "qnet qubes-setup-dnat-to-ns\n"},
	{"/usr/libexec/qnet/qubes-nmhook", "bin_t", "qnet qubes-nmhook\n"},
	{"/etc", "etc_t", ""},
	// libselinux counts SELinux as enabled only where this exists.
	{"/etc/selinux", "selinux_config_t", ""},
	{"/etc/selinux/config", "selinux_config_t", "SELINUX=enforcing\nSELINUXTYPE=default\n"},
	{"/etc/xen", "etc_t", ""},
	{"/etc/xen/scripts", "bin_t", ""},
	{"/etc/xen/scripts/vif-route-qubes", "initrc_exec_t", hotplugProbe + "# upstream vif-route-qubes 1\n"},
	{"/etc/NetworkManager", "NetworkManager_etc_t", ""},
	{"/etc/NetworkManager/dispatcher.d", "NetworkManager_etc_t", ""},
	{"/etc/NetworkManager/dispatcher.d/qubes-nmhook", "NetworkManager_initrc_exec_t", "#!/bin/sh\n# upstream nmhook 1\n"},
	{"/proc", "proc_t", ""},
	{"/sys", "sysfs_t", ""},
	{"/sys/fs", "sysfs_t", ""},
	{"/sys/fs/selinux", "security_t", ""},
	{"/dev", "device_t", ""},
	{"/out", "tmp_t", ""},
}

// hotplugProbe starts the stand-ins for upstream's and qnet's hotplug
// script: each records the domain it runs in.
const hotplugProbe = "#!/bin/sh\ncat /proc/self/attr/current >/out/hotplug-domain\n"

// bootedWithSELinux skips the test unless this is run.sh's SELinux boot.
func bootedWithSELinux(t *testing.T) {
	t.Helper()
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cmdline), "security=selinux") {
		t.Skip("not the SELinux boot (run.sh boots one with security=selinux)")
	}
}

func setLabel(t *testing.T, p, ctx string) {
	t.Helper()
	if err := unix.Lsetxattr(p, "security.selinux", []byte(ctx), 0); err != nil {
		t.Fatalf("label %s %s: %v", p, ctx, err)
	}
}

// label is the context of p, from its security.selinux attribute (what
// ls -Z shows).
func label(t *testing.T, p string) string {
	t.Helper()
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(p, "security.selinux", buf)
	if err != nil {
		t.Fatalf("read the context of %s: %v", p, err)
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

func ctxOf(typ string) string { return "system_u:object_r:" + typ + ":s0" }

// loadPolicy mounts selinuxfs and loads the reference policy, permissive.
func loadPolicy(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(selinuxfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("selinuxfs", selinuxfs, "selinuxfs", 0, ""); err != nil && err != unix.EBUSY {
		t.Fatalf("mount selinuxfs: %v", err)
	}
	policy, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	// One write: the kernel parses the policy from a single buffer.
	f, err := os.OpenFile(selinuxfs+"/load", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := syscall.Write(int(f.Fd()), policy); err != nil || n != len(policy) {
		t.Fatalf("load policy %s: wrote %d of %d bytes: %v", policyFile, n, len(policy), err)
	}
}

// buildTree makes the chroot on a tmpfs (the initramfs cannot hold
// labels), with the VM's shared libraries labelled lib_t (the loader
// ld_so_t).
func buildTree(t *testing.T) {
	t.Helper()
	if err := os.MkdirAll(selRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", selRoot, "tmpfs", 0, "mode=0755"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", selRoot, err)
	}
	t.Cleanup(func() { unix.Unmount(selRoot, unix.MNT_DETACH) })
	setLabel(t, selRoot, ctxOf("root_t"))
	for _, e := range selinuxTree {
		p := selRoot + e.path
		switch {
		case e.content == "":
			err := os.Mkdir(p, 0o755)
			if err != nil {
				t.Fatal(err)
			}
		case strings.HasPrefix(e.content, "@"):
			b, err := os.ReadFile(e.content[1:])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, b, 0o755); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(e.content), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		setLabel(t, p, ctxOf(e.ctx))
	}
	for _, applet := range []string{"sh", "cat", "cp", "mv", "rm", "grep", "cmp", "dirname", "printf", "[", "test"} {
		p := selRoot + "/bin/" + applet
		if err := os.Symlink("busybox", p); err != nil {
			t.Fatal(err)
		}
		setLabel(t, p, ctxOf("bin_t"))
	}
	for _, dir := range []string{"/lib", "/lib64"} {
		err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			dst := selRoot + p
			typ := "lib_t"
			switch {
			case fi.IsDir():
				if err := os.MkdirAll(dst, 0o755); err != nil {
					return err
				}
			case fi.Mode()&os.ModeSymlink != 0:
				return nil // run.sh installs resolved files, no links
			default:
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				if err := os.WriteFile(dst, b, 0o755); err != nil {
					return err
				}
				if strings.HasPrefix(fi.Name(), "ld-linux") {
					typ = "ld_so_t"
				}
			}
			setLabel(t, dst, ctxOf(typ))
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatalf("copy %s into the chroot: %v", dir, err)
		}
	}
	if err := unix.Mknod(selRoot+"/dev/null", unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	setLabel(t, selRoot+"/dev/null", ctxOf("null_device_t"))
	for _, m := range []struct{ fs, dir string }{{"proc", "/proc"}, {"selinuxfs", selinuxfs}} {
		if err := unix.Mount(m.fs, selRoot+m.dir, m.fs, 0, ""); err != nil {
			t.Fatalf("mount %s on %s: %v", m.fs, selRoot+m.dir, err)
		}
		t.Cleanup(func() { unix.Unmount(selRoot+m.dir, unix.MNT_DETACH) })
	}
}

// enforce switches SELinux to enforcing and empties the kernel log, so that
// denials found later are the takeover's.
func enforce(t *testing.T) {
	t.Helper()
	if _, err := unix.Klogctl(unix.SYSLOG_ACTION_CLEAR, nil); err != nil {
		t.Fatalf("clear the kernel log: %v", err)
	}
	if err := os.WriteFile(selinuxfs+"/enforce", []byte("1"), 0); err != nil {
		t.Fatalf("enforcing mode: %v", err)
	}
	if b, _ := os.ReadFile(selinuxfs + "/enforce"); strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("%s/enforce reads %q after writing 1", selinuxfs, b)
	}
}

// denials are the AVC denials the kernel logged since enforce.
func denials(t *testing.T) []string {
	t.Helper()
	buf := make([]byte, 1<<20)
	n, err := unix.Klogctl(unix.SYSLOG_ACTION_READ_ALL, buf)
	if err != nil {
		t.Fatalf("read the kernel log: %v", err)
	}
	var found []string
	for _, line := range strings.Split(string(buf[:n]), "\n") {
		if strings.Contains(line, "avc:") && strings.Contains(line, "denied") {
			found = append(found, line)
		}
	}
	return found
}

// asInit is a shell running script in the chroot in init_t: kernel_t (the
// test) enters it by running an init_exec_t file.
func asInit(script string) *exec.Cmd {
	cmd := exec.Command("/steps/init/busybox", "sh", "-c", script)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: selRoot}
	return cmd
}

// takeover runs qnet-takeover action in the chroot the way an RPM
// scriptlet runs: the package manager's domain (dpkg_t: Debian's reference
// policy has no rpm_t) sets the package script domain for the exec of
// /bin/sh -c '<scriptlet>' (runcon: setexeccon, then exec, as rpm does).
// Debian's dpkg_script_t stands in for Fedora's rpm_script_t; neither has a
// type transition for /etc/xen/scripts. The way there: kernel_t runs an
// init_exec_t file (init_t), which runs a dpkg_exec_t one (dpkg_t).
func takeover(t *testing.T, action string) {
	t.Helper()
	scriptlet := "/usr/libexec/qnet/qnet-takeover " + action
	inner := "exec >/out/" + action + ".log 2>&1; cat /proc/self/attr/current; echo; " + scriptlet
	out, err := asInit(`exec /steps/dpkg/busybox sh -c 'exec runcon system_u:system_r:dpkg_script_t:s0 /bin/sh -c "` + inner + `"'`).CombinedOutput()
	log, _ := os.ReadFile(selRoot + "/out/" + action + ".log")
	if err != nil {
		t.Fatalf("qnet-takeover %s: %v\n%s\nscript output:\n%s", action, err, out, log)
	}
	domain, _, _ := strings.Cut(string(log), "\n")
	if want := "system_u:system_r:dpkg_script_t:s0"; strings.TrimRight(domain, "\x00") != want {
		t.Fatalf("qnet-takeover %s ran in %q, want %s; output:\n%s", action, domain, want, log)
	}
	t.Logf("qnet-takeover %s in %s:\n%s", action, domain, log)
}

// hotplugDomain runs /etc/xen/scripts/vif-route-qubes in the chroot the way
// xl devd does, from xend_t (entered as systemd enters it, from init_t),
// and returns the domain the script ran in. run.sh's qnetxend.te adds
// Qubes' transition: xend_t runs initrc_exec_t files in initrc_t.
func hotplugDomain(t *testing.T) string {
	t.Helper()
	os.Remove(selRoot + "/out/hotplug-domain")
	cmd := asInit(`exec /steps/xend/busybox sh -c 'exec /etc/xen/scripts/vif-route-qubes online' </dev/null >/dev/null 2>&1`)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run the hotplug script from xend_t: %v\n%s", err, out)
	}
	return strings.TrimRight(readFile(t, selRoot+"/out/hotplug-domain"), "\x00")
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keptCopy(p string) string { return path.Join(path.Dir(p), "."+path.Base(p)+".qubes-orig") }

// TestSELinuxTakeoverKeepsLabels runs the RPM's qnet-takeover with SELinux
// enforcing, as the trigger (apply) and %preun (restore) run it, and checks
// every file's context: qnet's program at each path has the context
// upstream's file had, the kept copy keeps upstream's, and restore gives
// upstream's file its context back; also after an upgrade of upstream's
// package (a new file, labelled by the package manager) and a second apply.
// After each step the hotplug script, run as xl devd runs it, must run in
// initrc_t, as upstream's does.
func TestSELinuxTakeoverKeepsLabels(t *testing.T) {
	bootedWithSELinux(t)
	loadPolicy(t)
	buildTree(t)
	enforce(t)

	checkApplied := func(stage, upstream string) {
		t.Helper()
		for p, ctx := range takeoverPaths {
			full := selRoot + p
			ours := readFile(t, selRoot+"/usr/libexec/qnet/"+path.Base(p))
			if readFile(t, full) != ours {
				t.Errorf("%s: %s is not qnet's", stage, p)
			}
			if got := label(t, full); got != ctx {
				t.Errorf("%s: %s is labelled %s, want %s (upstream's)", stage, p, got, ctx)
			}
			if got := readFile(t, selRoot+keptCopy(p)); !strings.HasSuffix(got, " "+upstream+"\n") {
				t.Errorf("%s: %s holds %q, want upstream's version %s", stage, keptCopy(p), got, upstream)
			}
			if got := label(t, selRoot+keptCopy(p)); got != ctx {
				t.Errorf("%s: %s is labelled %s, want %s (upstream's)", stage, keptCopy(p), got, ctx)
			}
		}
	}

	const initrc = "system_u:system_r:initrc_t:s0"
	checkHotplug := func(stage string) {
		t.Helper()
		if got := hotplugDomain(t); got != initrc {
			t.Errorf("%s: xl devd's domain ran /etc/xen/scripts/vif-route-qubes in %s, want %s as upstream's", stage, got, initrc)
		}
	}
	checkHotplug("before apply")
	takeover(t, "apply")
	checkApplied("after apply", "1")
	checkHotplug("after apply")

	// An upgrade of the upstream package writes its file anew, labelled
	// from the file contexts; the trigger then applies again.
	for p, ctx := range takeoverPaths {
		tmp := selRoot + p + ".rpm-new"
		text := strings.Replace(readFile(t, selRoot+keptCopy(p)), " 1\n", " 2\n", 1)
		if err := os.WriteFile(tmp, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
		setLabel(t, tmp, ctx)
		if err := os.Rename(tmp, selRoot+p); err != nil {
			t.Fatal(err)
		}
	}
	takeover(t, "apply")
	checkApplied("after an upgrade of upstream and apply", "2")
	checkHotplug("after an upgrade of upstream and apply")

	takeover(t, "restore")
	for p, ctx := range takeoverPaths {
		full := selRoot + p
		if got := readFile(t, full); !strings.Contains(got, "\n# upstream ") || !strings.HasSuffix(got, " 2\n") {
			t.Errorf("after restore: %s holds %q, want upstream's version 2", p, got)
		}
		if got := label(t, full); got != ctx {
			t.Errorf("after restore: %s is labelled %s, want %s", p, got, ctx)
		}
		if _, err := os.Lstat(selRoot + keptCopy(p)); err == nil {
			t.Errorf("after restore: %s is left behind", keptCopy(p))
		}
	}
	checkHotplug("after restore")
	if d := denials(t); len(d) > 0 {
		t.Errorf("AVC denials while enforcing:\n%s", strings.Join(d, "\n"))
	}
	if strings.TrimSpace(readFile(t, selinuxfs+"/enforce")) != "1" {
		t.Errorf("SELinux left enforcing mode")
	}
}
