// Package packaging_test checks what ships: the Debian package that
// scripts/build-deb.sh makes from the `make install` tree (paths, modes,
// owners, runnable binaries, man pages that match --help, the diversions that
// take over upstream's files) and that two clean builds are byte-identical.
package packaging_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// testVersion is what the package under test is built as, so that --version
// and the control file can be checked against it.
const (
	testVersion    = "v0.0.0-qnt-test"
	testDebVersion = "0.0.0+qnt+test"
)

// shipped is every file the package must hold, with its mode; directories
// are every parent of these, mode 0755. Nothing else may be in it.
var shipped = map[string]fs.FileMode{
	"etc/xen/scripts/vif-route-qubes":                             0o755,
	"usr/lib/qubes/qubes-setup-dnat-to-ns":                        0o755,
	"etc/NetworkManager/dispatcher.d/qubes-nmhook":                0o755,
	"usr/lib/systemd/system/qubes-setup-dnat-to-ns-watch.service": 0o644,
	"usr/share/man/man8/vif-route-qubes.8.gz":                     0o644,
	"usr/share/man/man8/qubes-setup-dnat-to-ns.8.gz":              0o644,
	"usr/share/doc/qnet/copyright":                                0o644,
}

// binaries maps each program to where the package installs it.
var binaries = map[string]string{
	"vif-route-qubes":        "etc/xen/scripts/vif-route-qubes",
	"qubes-setup-dnat-to-ns": "usr/lib/qubes/qubes-setup-dnat-to-ns",
}

// repoRoot is the repository holding this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

var (
	debOnce sync.Once
	debPath string
	debDir  string
	debErr  string
)

// builtDeb builds the package once for all tests of this run, into a
// directory removed when the process exits.
func builtDeb(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("dpkg-deb"); err != nil {
		t.Skip("dpkg-deb is not installed (Debian package dpkg)")
	}
	debOnce.Do(func() {
		dir, err := os.MkdirTemp("", "qnt-deb-")
		if err != nil {
			debErr = err.Error()
			return
		}
		debDir = dir
		cmd := exec.Command(filepath.Join(repoRoot(t), "scripts/build-deb.sh"), "-o", dir)
		cmd.Env = append(os.Environ(), "VERSION="+testVersion, "SOURCE_DATE_EPOCH=1700000000")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			debErr = err.Error() + "\n" + stderr.String()
			return
		}
		debPath = strings.TrimSpace(string(out))
	})
	if debErr != "" {
		t.Fatalf("scripts/build-deb.sh: %s", debErr)
	}
	return debPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	for _, dir := range []string{debDir, rpmDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// extracted unpacks the package into a throwaway root.
func extracted(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	run(t, nil, "dpkg-deb", "-x", builtDeb(t), root)
	return root
}

var listLine = regexp.MustCompile(`^([-dl][rwxsStT-]{9}) (\S+)/(\S+) +\d+ \S+ \S+ \./(.*)$`)

func TestDebContents(t *testing.T) {
	deb := builtDeb(t)
	want := map[string]string{}
	for p, mode := range shipped {
		want[p] = "-" + mode.String()[1:]
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			want[d+"/"] = "d" + fs.FileMode(0o755).String()[1:]
		}
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, nil, "dpkg-deb", "-c", deb)), "\n") {
		m := listLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("unexpected dpkg-deb -c line %q", line)
		}
		mode, user, group, name := m[1], m[2], m[3], m[4]
		if name == "" {
			continue // the archive's root, ./
		}
		if user != "root" || group != "root" {
			t.Errorf("%s: owner %s/%s, want root/root", name, user, group)
		}
		got[name] = mode
	}
	for name, mode := range want {
		if got[name] == "" {
			t.Errorf("missing %s", name)
		} else if got[name] != mode {
			t.Errorf("%s: mode %s, want %s", name, got[name], mode)
		}
	}
	for name := range got {
		if want[name] == "" {
			t.Errorf("unexpected %s (mode %s)", name, got[name])
		}
	}
}

func TestDebExtractedFiles(t *testing.T) {
	root := extracted(t)
	for p, mode := range shipped {
		fi, err := os.Lstat(filepath.Join(root, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
		if st := fi.Sys().(*syscall.Stat_t); os.Geteuid() == 0 && (st.Uid != 0 || st.Gid != 0) {
			t.Errorf("%s: owner %d:%d, want 0:0", p, st.Uid, st.Gid)
		}
	}
	for name, p := range binaries {
		t.Run(name, func(t *testing.T) {
			got := run(t, nil, filepath.Join(root, p), "--version")
			if want := name + " " + testVersion + "\n"; got != want {
				t.Errorf("--version printed %q, want %q", got, want)
			}
		})
	}
}

func TestDebControl(t *testing.T) {
	deb := builtDeb(t)
	fields := map[string]string{
		"Package": "qnet",
		"Version": testDebVersion,
		"Depends": "qubes-core-agent-networking",
	}
	for field, want := range fields {
		if got := strings.TrimSpace(run(t, nil, "dpkg-deb", "-f", deb, field)); got != want {
			t.Errorf("control field %s = %q, want %q", field, got, want)
		}
	}
	ctl := t.TempDir()
	run(t, nil, "dpkg-deb", "-e", deb, ctl)
	for _, script := range []string{"preinst", "postinst", "prerm", "postrm"} {
		p := filepath.Join(ctl, script)
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != 0o755 {
			t.Errorf("%s: mode %v, want 0755", script, fi.Mode())
		}
		text, _ := os.ReadFile(p)
		if bytes.Contains(text, []byte("@")) {
			t.Errorf("%s still holds a placeholder:\n%s", script, text)
		}
		run(t, nil, "sh", "-n", p)
	}
	md5sums := run(t, nil, "sh", "-c", "cd \"$1\" && md5sum --quiet -c \"$2\"", "sh", extracted(t), filepath.Join(ctl, "md5sums"))
	if md5sums != "" {
		t.Errorf("md5sums do not match the files: %s", md5sums)
	}
}

// longFlags are the long option names in text, found by pattern.
func longFlags(text string, pattern *regexp.Regexp) []string {
	var flags []string
	for _, m := range pattern.FindAllStringSubmatch(text, -1) {
		flags = append(flags, strings.Split(strings.ReplaceAll(m[1], `\-`, "-"), " ")...)
	}
	var long []string
	for _, f := range flags {
		if name, ok := strings.CutPrefix(f, "--"); ok && name != "help" {
			long = append(long, name)
		}
	}
	slices.Sort(long)
	return slices.Compact(long)
}

var (
	// pflag's PrintDefaults: "  -v, --verbose   text" or "      --dry-run".
	helpFlag = regexp.MustCompile(`(?m)^\s+((?:-\w, )?--[\w-]+)`)
	// mdoc: ".It Fl v , \-verbose Ar x"; the Fl macro adds the first dash.
	manFlag = regexp.MustCompile(`(?m)^\.It Fl (.*)$`)
)

func TestManPagesMatchHelp(t *testing.T) {
	root := extracted(t)
	for name, p := range binaries {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(root, p), "--help")
			help, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("--help: %v\n%s", err, help)
			}
			gz, err := os.Open(filepath.Join(root, "usr/share/man/man8", name+".8.gz"))
			if err != nil {
				t.Fatal(err)
			}
			defer gz.Close()
			zr, err := gzip.NewReader(gz)
			if err != nil {
				t.Fatal(err)
			}
			page, err := io.ReadAll(zr)
			if err != nil {
				t.Fatal(err)
			}
			var items []string
			for _, m := range manFlag.FindAllStringSubmatch(string(page), -1) {
				for _, tok := range strings.Fields(m[1]) {
					if strings.HasPrefix(tok, `\-`) {
						items = append(items, "-"+strings.ReplaceAll(tok, `\-`, "-"))
					}
				}
			}
			fromHelp := longFlags(string(help), helpFlag)
			fromMan := longFlags(strings.Join(items, " "), regexp.MustCompile(`(\S+)`))
			if !slices.Equal(fromHelp, fromMan) {
				t.Errorf("--help lists %v, the man page documents %v", fromHelp, fromMan)
			}
			for _, f := range fromHelp {
				if !strings.Contains(string(page), `.Op Fl \-`+strings.ReplaceAll(f, "-", `\-`)) &&
					!strings.Contains(string(page), `\-`+strings.ReplaceAll(f, "-", `\-`)+"\n") {
					t.Errorf("SYNOPSIS does not show --%s", f)
				}
			}
		})
	}
}

// TestDebInstallsNoUdevRule checks that neither the package nor `make
// install` (which the package is built from) installs a udev rule: xen-netback
// sends online/offline uevents for every vif, so a rule running the hotplug
// script would start a second run beside the toolstack's (xl devd).
func TestDebInstallsNoUdevRule(t *testing.T) {
	root := extracted(t)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if d.Name() == "udev" || strings.HasSuffix(d.Name(), ".rules") {
			t.Errorf("the package installs %s", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestDebTakeover installs the package with dpkg into a throwaway root,
// over stand-ins for the two upstream packages, and checks that upstream's
// files are diverted while it is installed, stay diverted when upstream is
// upgraded, and come back when it is removed.
func TestDebTakeover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("installing into a throwaway root with dpkg needs root")
	}
	deb := builtDeb(t)
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
		if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	upstream := map[string][]string{
		"qubes-core-agent-networking":      {"etc/xen/scripts/vif-route-qubes", "usr/lib/qubes/qubes-setup-dnat-to-ns"},
		"qubes-core-agent-network-manager": {"etc/NetworkManager/dispatcher.d/qubes-nmhook"},
	}
	dpkg := func(args ...string) {
		t.Helper()
		run(t, nil, "dpkg", append([]string{"--root=" + root, "--force-script-chrootless", "--force-unsafe-io"}, args...)...)
	}
	install := func(version string) {
		t.Helper()
		for pkg, files := range upstream {
			dpkg("-i", fakeUpstream(t, pkg, version, files))
		}
	}
	read := func(p string) string {
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil {
			return "(" + err.Error() + ")"
		}
		return string(b)
	}
	diverted := func(p string) string { return path.Join(path.Dir(p), "."+path.Base(p)+".qubes-orig") }
	built := extracted(t)
	checkTakenOver := func(stage string) {
		t.Helper()
		for _, files := range upstream {
			for _, p := range files {
				if read(p) != mustRead(t, filepath.Join(built, p)) {
					t.Errorf("%s: %s is not qnet's", stage, p)
				}
				if got := read(diverted(p)); got != upstreamText(p) {
					t.Errorf("%s: diverted %s holds %q, want upstream's", stage, diverted(p), got)
				}
			}
		}
	}

	install("1")
	dpkg("-i", deb)
	checkTakenOver("after install")
	install("2") // an upgrade of upstream must land beside ours, not over it
	checkTakenOver("after upstream upgrade")
	dpkg("-i", deb) // reinstall: the diversions stay
	checkTakenOver("after reinstall")

	dpkg("--purge", "qnet")
	for _, files := range upstream {
		for _, p := range files {
			if got := read(p); got != upstreamText(p) {
				t.Errorf("after removal: %s holds %q, want upstream's back", p, got)
			}
			if _, err := os.Lstat(filepath.Join(root, diverted(p))); err == nil {
				t.Errorf("after removal: %s is left behind", diverted(p))
			}
		}
	}
	if got := run(t, []string{"DPKG_ROOT=" + root}, "dpkg-divert", "--list"); strings.TrimSpace(got) != "" {
		t.Errorf("diversions left after removal:\n%s", got)
	}
}

func mustRead(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// upstreamText is the content of upstream's file p in the stand-ins.
func upstreamText(p string) string { return "#!/bin/sh\n# upstream " + p + "\n" }

// fakeUpstream builds a stand-in for an upstream package that owns files.
func fakeUpstream(t *testing.T, pkg, version string, files []string) string {
	t.Helper()
	dir := t.TempDir()
	for _, p := range files {
		full := filepath.Join(dir, "root", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(upstreamText(p)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	control := "Package: " + pkg + "\nVersion: " + version + "\nArchitecture: all\n" +
		"Maintainer: test <test@example.invalid>\nDescription: stand-in for the upstream package\n"
	if err := os.MkdirAll(filepath.Join(dir, "root/DEBIAN"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "root/DEBIAN/control"), []byte(control), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, pkg+".deb")
	run(t, nil, "dpkg-deb", "--root-owner-group", "--build", filepath.Join(dir, "root"), out)
	return out
}

// TestReproducible runs the reproducibility check: two builds from copies
// of the tree at different paths, each with an empty Go build cache.
func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("two clean builds take minutes; skipped with -short")
	}
	builtDeb(t) // same tools needed
	out := run(t, nil, filepath.Join(repoRoot(t), "scripts/check-reproducible.sh"))
	for _, name := range []string{"vif-route-qubes", "qubes-setup-dnat-to-ns", ".deb"} {
		if !strings.Contains(out, name) {
			t.Errorf("check-reproducible.sh did not compare %s:\n%s", name, out)
		}
	}
}
