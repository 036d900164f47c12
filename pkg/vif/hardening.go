package vif

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Setting is one write that hardening asks for.
type Setting struct {
	Key           string // slash form, relative to /proc/sys
	Value         string
	IgnoreFailure bool
}

// BuiltinHardening is used when the hardening file is not installed. It
// holds the same settings, in the same order, as the file Qubes ships as
// /etc/sysctl.d/81-qubes.conf.optional.
const BuiltinHardening = `# Qubes network hardening, applied per interface when the qube's
# harden-network-interfaces service is enabled.

# System-wide settings. The first two lie outside every per-interface
# prefix, so only a full sysctl.d run applies them; the "all" ones are also
# applied when an interface is hardened.
net.ipv6.max_hbh_opts_length = 0
net.ipv6.max_dst_opts_length = 0
net.ipv6.conf.all.accept_dad = 0
net.ipv4.conf.all.accept_redirects = 0

# IPv4: no source routing, no ICMP redirects in either direction, and no
# unicast IP hidden in link-layer multicast.
net.ipv4.conf.*.accept_source_route = 0
net.ipv4.conf.*.accept_redirects = 0
net.ipv4.conf.*.secure_redirects = 0
net.ipv4.conf.*.send_redirects = 0
net.ipv4.conf.*.drop_unicast_in_l2_multicast = 1

# IPv6: drop routing headers, ignore redirects and router advertisements, no
# address autoconfiguration or duplicate address detection.
net.ipv6.conf.*.accept_source_route = -1
net.ipv6.conf.*.accept_redirects = 0
net.ipv6.conf.*.accept_ra = 0
net.ipv6.conf.*.accept_dad = 0
net.ipv6.conf.*.autoconf = 0
net.ipv6.conf.*.drop_unicast_in_l2_multicast = 1
`

// prefixTrees are the per-interface subtrees upstream passes to
// systemd-sysctl --prefix, for "all" and for the vif.
var prefixTrees = []string{"net/ipv4/conf", "net/ipv4/neigh", "net/ipv6/conf", "net/ipv6/neigh"}

// Hardening returns the writes that
//
//	systemd-sysctl --prefix=/net/ipv4/conf/IF --prefix=/net/ipv4/neigh/IF \
//	  --prefix=/net/ipv6/conf/IF --prefix=/net/ipv6/neigh/IF ... -- confPath
//
// performs for each IF in ifaces, with keys relative to procRoot (/proc/sys on
// a live system). When confPath does not exist, BuiltinHardening is used.
//
// It follows systemd-sysctl (the result matched systemd 252's writes for
// Qubes' file in a network namespace):
//   - the file is parsed by ParseConf; a skipped line is an error here, as it
//     makes systemd-sysctl exit with failure;
//   - a key without glob characters is kept when it lies under one of the
//     prefixes (component-wise) and is returned whether or not its file
//     exists, so writing it fails unless IgnoreFailure;
//   - a glob key is tried against each prefix in turn: if its leading
//     components can match the prefix, the prefix replaces them and the rest
//     is expanded against the files that exist under procRoot (sorted), so a
//     missing file is never a setting; an expansion that is itself a key of
//     the file (an explicit setting or an exclusion) is left out, because an
//     explicit line wins over a glob wherever it stands;
//   - settings come in the file's order (see ParseConf for repeated keys),
//     a glob's expansions in prefix order.
func Hardening(confPath, procRoot string, ifaces []string) ([]Setting, error) {
	prefixes, err := ifacePrefixes(ifaces)
	if err != nil {
		return nil, err
	}
	assignments, err := readHardening(confPath)
	if err != nil {
		return nil, err
	}

	var kept []Assignment
	explicit := map[string]bool{}
	for _, a := range assignments {
		if !isGlob(a.Key) && !underAny(a.Key, prefixes) {
			continue
		}
		kept = append(kept, a)
		explicit[a.Key] = true
	}

	var settings []Setting
	for _, a := range kept {
		switch {
		case a.Exclude:
		case !isGlob(a.Key):
			settings = append(settings, Setting{Key: a.Key, Value: a.Value, IgnoreFailure: a.IgnoreFailure})
		default:
			for _, prefix := range prefixes {
				keys, err := expandUnder(procRoot, a.Key, prefix)
				if err != nil {
					return nil, err
				}
				for _, k := range keys {
					if !explicit[k] {
						settings = append(settings, Setting{Key: k, Value: a.Value, IgnoreFailure: a.IgnoreFailure})
					}
				}
			}
		}
	}
	return settings, nil
}

// readHardening parses confPath, or BuiltinHardening when it does not exist.
func readHardening(confPath string) ([]Assignment, error) {
	var (
		r    io.Reader
		name = confPath
	)
	f, err := os.Open(confPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r, name = strings.NewReader(BuiltinHardening), "built-in hardening"
	case err != nil:
		return nil, fmt.Errorf("read hardening settings: %w", err)
	default:
		defer f.Close()
		r = f
	}
	assignments, err := ParseConf(r, name)
	if err != nil {
		return nil, fmt.Errorf("read hardening settings: %w", err)
	}
	return assignments, nil
}

// ifacePrefixes lists the --prefix paths for ifaces, interface by interface.
func ifacePrefixes(ifaces []string) ([]string, error) {
	var prefixes []string
	for _, iface := range ifaces {
		if iface == "" || iface == "." || iface == ".." || strings.Contains(iface, "/") {
			return nil, fmt.Errorf("hardening: bad interface name %q", iface)
		}
		for _, tree := range prefixTrees {
			prefixes = append(prefixes, tree+"/"+iface)
		}
	}
	return prefixes, nil
}

func isGlob(key string) bool { return strings.ContainsAny(key, globChars) }

// underAny reports whether key is one of prefixes or below one, comparing
// whole components (net/ipv4/conf/all does not contain net/ipv4/conf/allx).
func underAny(key string, prefixes []string) bool {
	for _, p := range prefixes {
		if key == p || strings.HasPrefix(key, p+"/") {
			return true
		}
	}
	return false
}

// expandUnder returns the existing keys under procRoot that pattern matches
// within prefix. Like systemd's path_glob_can_match, it first checks the
// pattern's leading components against the prefix's (equal, or a glob
// component matching), then puts the prefix in their place, so only the
// remaining components are globbed.
func expandUnder(procRoot, pattern, prefix string) ([]string, error) {
	pat := strings.Split(pattern, "/")
	pre := strings.Split(prefix, "/")
	if len(pat) < len(pre) {
		return nil, nil
	}
	for i, c := range pre {
		if pat[i] == c {
			continue
		}
		if !isGlob(pat[i]) {
			return nil, nil
		}
		// The pattern was validated by ParseConf.
		if ok, _ := path.Match(pat[i], c); !ok {
			return nil, nil
		}
	}
	glob := escapeGlob(filepath.Clean(procRoot)) + "/" + escapeGlob(prefix)
	if rest := pat[len(pre):]; len(rest) > 0 {
		glob += "/" + strings.Join(rest, "/")
	}
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil, fmt.Errorf("expand sysctl glob %s under %s: %w", pattern, procRoot, err)
	}
	keys := make([]string, 0, len(matches))
	for _, m := range matches {
		rel, err := filepath.Rel(procRoot, m)
		if err != nil {
			return nil, fmt.Errorf("expand sysctl glob %s: %w", pattern, err)
		}
		keys = append(keys, filepath.ToSlash(rel))
	}
	return keys, nil
}

// escapeGlob quotes the characters filepath.Glob treats specially, for a
// literal part of a pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
