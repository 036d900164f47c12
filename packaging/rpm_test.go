package packaging_test

import (
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

// The RPM under test, built twice so that an upgrade of qnet itself can be
// tested: rpmVersion is what scripts/build-rpm.sh makes of testVersion.
const (
	rpmVersion        = "0.0.0+qnt+test"
	testVersionNext   = "v0.0.1-qnt-test"
	rpmVersionNext    = "0.0.1+qnt+test"
	qnetDir           = "usr/libexec/qnet"
	takeoverInTrigger = "/usr/libexec/qnet/qnet-takeover apply"
)

// rpmShipped is every file the RPM holds, with its mode, and its
// directories; nothing else may be in it (no udev rule: xl devd runs the
// hotplug script, and a rule would run it a second time).
var rpmShipped = map[string]string{
	"/usr/libexec/qnet":                                            "drwxr-xr-x",
	"/usr/libexec/qnet/vif-route-qubes":                            "-rwxr-xr-x",
	"/usr/libexec/qnet/qubes-setup-dnat-to-ns":                     "-rwxr-xr-x",
	"/usr/libexec/qnet/qubes-nmhook":                               "-rwxr-xr-x",
	"/usr/libexec/qnet/qnet-takeover":                              "-rwxr-xr-x",
	"/usr/libexec/qnet/takeover.list":                              "-rw-r--r--",
	"/usr/lib/systemd/system/qubes-setup-dnat-to-ns-watch.service": "-rw-r--r--",
	"/usr/lib/systemd/system-preset/75-qnet.preset":                "-rw-r--r--",
}

// rpmManPages are shipped too, compressed or not as the build host's rpm
// does it, and the licence, in a directory named as its rpm names it
// (qnet on Fedora, qnet-<version> on Debian).
var (
	rpmManPages = regexp.MustCompile(`^/usr/share/man/man8/(vif-route-qubes|qubes-setup-dnat-to-ns)\.8(\.gz|\.bz2|\.xz|\.zst)?$`)
	rpmLicence  = regexp.MustCompile(`^/usr/share/licenses/qnet(-` + regexp.QuoteMeta(rpmVersion) + `)?(/LICENSE)?$`)
)

var (
	rpmMu    sync.Mutex
	rpmBuilt = map[string]string{}
	rpmDir   string
)

// builtRPM builds the RPM of version (a `git describe` string) once for
// all tests of this run.
func builtRPM(t *testing.T, version string) string {
	t.Helper()
	if _, err := exec.LookPath("rpmbuild"); err != nil {
		t.Skip("rpmbuild is not installed (Debian package rpm)")
	}
	rpmMu.Lock()
	defer rpmMu.Unlock()
	if p, ok := rpmBuilt[version]; ok {
		if p == "" {
			t.Fatalf("scripts/build-rpm.sh failed earlier for %s", version)
		}
		return p
	}
	rpmBuilt[version] = ""
	if rpmDir == "" {
		dir, err := os.MkdirTemp("", "qnt-rpm-")
		if err != nil {
			t.Fatal(err)
		}
		rpmDir = dir
	}
	out := run(t, []string{"VERSION=" + version, "SOURCE_DATE_EPOCH=1700000000"},
		filepath.Join(repoRoot(t), "scripts/build-rpm.sh"), "-o", filepath.Join(rpmDir, version))
	rpmBuilt[version] = strings.TrimSpace(out)
	return rpmBuilt[version]
}

func rpmQuery(t *testing.T, pkg string, args ...string) string {
	t.Helper()
	return run(t, nil, "rpm", append([]string{"-qp"}, append(args, pkg)...)...)
}

func TestRPMContents(t *testing.T) {
	pkg := builtRPM(t, testVersion)
	got := map[string]string{}
	man, licence := 0, 0
	for _, line := range strings.Split(strings.TrimSpace(rpmQuery(t, pkg,
		"--qf", `[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILENAMES}\n]`)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("unexpected rpm -qp line %q", line)
		}
		if f[1] != "root:root" {
			t.Errorf("%s: owner %s, want root:root", f[2], f[1])
		}
		if strings.Contains(f[2], "udev") || strings.HasSuffix(f[2], ".rules") {
			t.Errorf("ships %s: no udev rule may run the hotplug script", f[2])
		}
		if rpmManPages.MatchString(f[2]) {
			man++
			continue
		}
		if m := rpmLicence.FindStringSubmatch(f[2]); m != nil {
			want := "drwxr-xr-x"
			if m[2] != "" {
				want = "-rw-r--r--"
			}
			if f[0] != want {
				t.Errorf("%s: mode %s, want %s", f[2], f[0], want)
			}
			licence++
			continue
		}
		got[f[2]] = f[0]
	}
	if man != 2 || licence != 2 {
		t.Errorf("%d man pages and %d licence entries, want 2 and 2 (directory and file)", man, licence)
	}
	for name, mode := range rpmShipped {
		if got[name] == "" {
			t.Errorf("missing %s", name)
		} else if got[name] != mode {
			t.Errorf("%s: mode %s, want %s", name, got[name], mode)
		}
	}
	for name, mode := range got {
		if rpmShipped[name] == "" {
			t.Errorf("unexpected %s (mode %s)", name, mode)
		}
	}
	if v := rpmQuery(t, pkg, "--qf", "%{NAME} %{VERSION} %{ARCH}"); !strings.HasPrefix(v, "qnet "+rpmVersion+" ") || strings.HasSuffix(v, "noarch") {
		t.Errorf("package is %q, want qnet %s for the build's architecture", v, rpmVersion)
	}
}

func TestRPMRequirements(t *testing.T) {
	reqs := strings.Split(strings.TrimSpace(rpmQuery(t, builtRPM(t, testVersion), "--requires")), "\n")
	for _, want := range []string{"qubes-core-agent-networking", "coreutils", "grep", "/bin/sh",
		"(libselinux-utils if selinux-policy)"} {
		if !slices.Contains(reqs, want) {
			t.Errorf("requires %q, missing %s", reqs, want)
		}
	}
	for _, r := range reqs {
		// Static binaries: no shared library; nothing Debian-only.
		if strings.Contains(r, ".so") || strings.Contains(r, "udev") {
			t.Errorf("unexpected requirement %q", r)
		}
	}
}

// TestRPMScriptlets checks the takeover is wired to the right events: the
// trigger on both upstream packages applies it, removal (not upgrade)
// restores, and an upgrade of qnet restores first with the old version.
func TestRPMScriptlets(t *testing.T) {
	pkg := builtRPM(t, testVersion)
	triggers := rpmQuery(t, pkg, "--triggers")
	head := regexp.MustCompile(`(?m)^triggerin scriptlet \(using /bin/sh\) -- (.*)$`).FindStringSubmatch(triggers)
	if head == nil {
		t.Fatalf("no triggerin scriptlet:\n%s", triggers)
	}
	on := strings.Split(head[1], ", ")
	slices.Sort(on)
	if want := []string{"qubes-core-agent-network-manager", "qubes-core-agent-networking"}; !slices.Equal(on, want) {
		t.Errorf("triggerin on %v, want %v", on, want)
	}
	if !strings.Contains(triggers, takeoverInTrigger) {
		t.Errorf("triggerin does not run %s:\n%s", takeoverInTrigger, triggers)
	}
	scripts := rpmQuery(t, pkg, "--scripts")
	section := func(name string) string {
		_, rest, ok := strings.Cut(scripts, name+" scriptlet (using /bin/sh):\n")
		if !ok {
			t.Errorf("no %s scriptlet:\n%s", name, scripts)
			return ""
		}
		if i := regexp.MustCompile(`(?m)^\w+ scriptlet`).FindStringIndex(rest); i != nil {
			rest = rest[:i[0]]
		}
		return rest
	}
	checks := []struct{ scriptlet, pattern string }{
		{"preinstall", `(?s)"\$1" -gt 1 .*qnet-takeover restore`},
		{"preuninstall", `(?s)"\$1" -eq 0 \]; then\s+/usr/libexec/qnet/qnet-takeover restore`},
		{"postinstall", `qubes-setup-dnat-to-ns-watch\.service`},
	}
	for _, c := range checks {
		if body := section(c.scriptlet); !regexp.MustCompile(c.pattern).MatchString(body) {
			t.Errorf("%s scriptlet does not match %s:\n%s", c.scriptlet, c.pattern, body)
		}
	}
	for _, s := range []string{"postinstall", "postuninstall"} {
		if strings.Contains(section(s), "takeover") {
			t.Errorf("%s runs the takeover; only the trigger, %%pre and %%preun may", s)
		}
	}
}

// rpmUpstream is what the stand-ins for the upstream packages own.
var rpmUpstream = map[string][]string{
	"qubes-core-agent-networking":      {"/etc/xen/scripts/vif-route-qubes", "/usr/lib/qubes/qubes-setup-dnat-to-ns"},
	"qubes-core-agent-network-manager": {"/etc/NetworkManager/dispatcher.d/qubes-nmhook"},
}

// upstreamVersionText is the content of upstream's file p in version v of
// its stand-in, different per version so that an upgrade shows.
func upstreamVersionText(p, v string) string { return "#!/bin/sh\n# upstream " + p + " " + v + "\n" }

// standInRPM builds an RPM of name and version, with more header lines,
// whose %install runs install (shell lines) and which owns files.
func standInRPM(t *testing.T, name, version, header, install string, files []string) string {
	t.Helper()
	dir := t.TempDir()
	spec := fmt.Sprintf(`Name: %s
Version: %s
Release: 1
Summary: stand-in for a test
License: none
AutoReqProv: no
%s
%%description
A stand-in built by packaging/rpm_test.go.
%%install
%s
%%files
%s
`, name, version, header, install, strings.Join(files, "\n"))
	specPath := filepath.Join(dir, name+".spec")
	if err := os.WriteFile(specPath, []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "rpmbuild", "-bb", "--quiet", "--define", "_topdir "+dir, "--define", "_rpmdir "+dir,
		"--define", "_build_name_fmt %%{NAME}-%%{VERSION}.rpm", specPath)
	return filepath.Join(dir, name+"-"+version+".rpm")
}

// upstreamRPM is a stand-in for an upstream package at version.
func upstreamRPM(t *testing.T, name, version string) string {
	t.Helper()
	var install []string
	for _, p := range rpmUpstream[name] {
		install = append(install, fmt.Sprintf("install -d %%{buildroot}%s\nprintf '%%s' '%s' >%%{buildroot}%s\nchmod 0755 %%{buildroot}%s",
			path.Dir(p), upstreamVersionText(p, version), p, p))
	}
	return standInRPM(t, name, version, "BuildArch: noarch", strings.Join(install, "\n"), rpmUpstream[name])
}

// baseRPM is the scratch root's system: a static busybox as /bin/sh and
// the tools the scriptlets run, standing in for coreutils and grep.
func baseRPM(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox is not installed (Debian package busybox-static)")
	}
	if out, _ := exec.Command("file", "-L", bb).Output(); !strings.Contains(string(out), "statically linked") {
		t.Skipf("%s is not static (Debian package busybox-static)", bb)
	}
	applets := []string{"sh", "grep", "cmp", "cp", "mv", "rm", "dirname", "cat", "[", "test", "printf", "chmod"}
	install := []string{"install -D -m 0755 " + bb + " %{buildroot}/bin/busybox"}
	files := []string{"/bin/busybox"}
	for _, a := range applets {
		install = append(install, "ln -s busybox '%{buildroot}/bin/"+a+"'")
		files = append(files, "/bin/"+a)
	}
	return standInRPM(t, "base", "1", "Provides: coreutils grep", strings.Join(install, "\n"), files)
}

// keptCopy is where the takeover keeps upstream's file of path p.
func keptCopy(p string) string { return path.Join(path.Dir(p), "."+path.Base(p)+".qubes-orig") }

// readIn is the content of p under root, or the error in parentheses.
func readIn(root, p string) string {
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		return "(" + err.Error() + ")"
	}
	return string(b)
}

// scratchRoot is an rpm database and root holding the base system and
// version 1 of both upstream stand-ins, and a function running rpm on it.
func scratchRoot(t *testing.T) (string, func(args ...string)) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("rpm --root runs the scriptlets in a chroot, which needs root")
	}
	root := t.TempDir()
	rpm := func(args ...string) {
		t.Helper()
		run(t, nil, "rpm", append([]string{"--root", root}, args...)...)
	}
	rpm("--initdb")
	rpm("-i", baseRPM(t))
	for name := range rpmUpstream {
		rpm("-i", upstreamRPM(t, name, "1"))
	}
	return root, rpm
}

// TestRPMTakeover installs the RPM with rpm --root into a scratch root over
// stand-ins of the two upstream packages, then upgrades a stand-in,
// upgrades qnet and removes it, checking after each step which file is at
// each of upstream's paths and which is kept aside.
func TestRPMTakeover(t *testing.T) {
	qnet := builtRPM(t, testVersion)
	qnetNext := builtRPM(t, testVersionNext)
	root, rpm := scratchRoot(t)
	read := func(p string) string { return readIn(root, p) }
	// check: every upstream path holds qnet's program; the kept copy holds
	// upstream's file of version want[package].
	check := func(stage string, want map[string]string) {
		t.Helper()
		for name, files := range rpmUpstream {
			for _, p := range files {
				if ours := read(path.Join(qnetDir, path.Base(p))); read(p) != ours || strings.HasPrefix(ours, "(") {
					t.Errorf("%s: %s is not qnet's %s", stage, p, path.Join(qnetDir, path.Base(p)))
				}
				if got, w := read(keptCopy(p)), upstreamVersionText(p, want[name]); got != w {
					t.Errorf("%s: %s holds %q, want %q", stage, keptCopy(p), got, w)
				}
			}
		}
	}

	rpm("-i", qnet)
	check("after install", map[string]string{"qubes-core-agent-networking": "1", "qubes-core-agent-network-manager": "1"})
	rpm("-U", upstreamRPM(t, "qubes-core-agent-networking", "2"))
	check("after an upgrade of qubes-core-agent-networking",
		map[string]string{"qubes-core-agent-networking": "2", "qubes-core-agent-network-manager": "1"})
	rpm("-U", qnetNext)
	check("after an upgrade of qnet", map[string]string{"qubes-core-agent-networking": "2", "qubes-core-agent-network-manager": "1"})
	if got := read("/etc/xen/scripts/vif-route-qubes"); got != mustRead(t, filepath.Join(root, qnetDir, "vif-route-qubes")) {
		t.Error("after an upgrade of qnet: /etc/xen/scripts/vif-route-qubes is not the new version's")
	}
	if v := run(t, nil, "chroot", root, "/"+qnetDir+"/vif-route-qubes", "--version"); v != "vif-route-qubes "+testVersionNext+"\n" {
		t.Errorf("installed vif-route-qubes --version printed %q, want %s", v, testVersionNext)
	}

	rpm("-e", "qnet")
	for name, files := range rpmUpstream {
		for _, p := range files {
			if _, err := os.Lstat(filepath.Join(root, keptCopy(p))); err == nil {
				t.Errorf("after removal: %s is left behind", keptCopy(p))
			}
		}
		// rpm -V compares every file with the digest, mode, owner and
		// time the package recorded: upstream's files are back byte for
		// byte.
		cmd := exec.Command("rpm", "--root", root, "-V", name)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("after removal: rpm -V %s: %v\n%s", name, err, out)
		}
	}
	if _, err := os.Stat(filepath.Join(root, qnetDir)); !os.IsNotExist(err) {
		t.Errorf("after removal: %s still exists (%v)", qnetDir, err)
	}
}

// TestRPMUpstreamErasedFirst erases an upstream package while qnet is
// installed (rpm removes the path, qnet's program with it), then qnet: the
// kept copy of that package's file must not come back as a stray file.
func TestRPMUpstreamErasedFirst(t *testing.T) {
	qnet := builtRPM(t, testVersion)
	root, rpm := scratchRoot(t)
	rpm("-i", qnet)
	rpm("-e", "qubes-core-agent-network-manager")
	rpm("-e", "qnet")
	for _, p := range rpmUpstream["qubes-core-agent-network-manager"] {
		for _, q := range []string{p, keptCopy(p)} {
			if _, err := os.Lstat(filepath.Join(root, q)); !os.IsNotExist(err) {
				t.Errorf("%s exists after both packages were erased (%v)", q, err)
			}
		}
	}
	for _, p := range rpmUpstream["qubes-core-agent-networking"] {
		if got, want := readIn(root, p), upstreamVersionText(p, "1"); got != want {
			t.Errorf("%s holds %q, want upstream's %q", p, got, want)
		}
	}
}
