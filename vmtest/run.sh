#!/usr/bin/env bash
# Runs the kernel-level tests inside a qemu VM that boots Debian's stock
# cloud kernel, because the build machines' own kernel has neither
# flowtables nor loadable modules. Streams the VM's serial console and exits
# with the tests' status.
#
# Usage (as root): make vmtest, or vmtest/run.sh after make build
# Environment:
#   VMTEST_CACHE    where downloaded packages are kept between runs
#                   (default $XDG_CACHE_HOME/qnet-vmtest or /var/cache/qnet-vmtest)
#   VMTEST_ACCEL    auto (default: KVM only if a short probe boot succeeds), tcg or kvm
#   VMTEST_TIMEOUT  seconds the test VM may run (default 600)
#   VMTEST_KERNEL   the kernel package to boot (default: the one Debian's
#                   linux-image-cloud-amd64 depends on)
#   VMTEST_PKGS     packages whose tests also run in the VM, space separated
#                   (unset: every package under ./pkg and ./cmd that has tests)
#
# A second, short boot enables SELinux (security=selinux) with Debian's
# reference policy and runs only vmtest's SELinux tests.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cache=${VMTEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/qnet-vmtest}
accel=${VMTEST_ACCEL:-auto}
vm_timeout=${VMTEST_TIMEOUT:-600}
probe_timeout=15
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH

# Host tools whose binaries and shared libraries go into the VM, so tests
# can check kernel state independently of the code under test.
# chcon and selinuxenabled are what packaging/rpm/qnet-takeover runs where
# SELinux is on; runcon enters the package script domain.
guest_tools=(nft ip conntrack dnsmasq tcpdump unshare ping stat dbus-daemon xenstore-read xenstore-write xenstore-ls xenstore-rm
	chcon selinuxenabled runcon)

log() { echo "vmtest: $*" >&2; }
die() { log "$*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, boots a VM)"

apt_updated=
apt_update_once() {
	[ -n "$apt_updated" ] && return
	log "apt-get update"
	apt-get update -qq
	apt_updated=1
}

# The project's own test dependencies plus what building and booting the
# image needs; install-deps.sh prints what it installs.
# selinux-policy-default compiles the reference policy on installation.
"$root/scripts/install-deps.sh" qemu-system-x86 cpio kmod dpkg xz-utils zstd \
	selinux-policy-default selinux-policy-dev selinux-utils coreutils

# The cloud kernel Debian currently ships for this release: the dependency
# of the meta-package, e.g. linux-image-6.1.0-56-cloud-amd64.
kernel_package() {
	apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		awk '$1 == "Depends:" && $2 ~ /^linux-image-.*-cloud-amd64$/ { print $2; exit }'
}

# fetch_deb PACKAGE: prints the path of PACKAGE's .deb in the cache,
# downloading it first unless a copy is already there.
fetch_deb() {
	local pkg=$1 deb
	deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
	if [ -z "$deb" ]; then
		log "downloading $pkg into $cache"
		(cd "$cache" && apt-get download -q "$pkg" >/dev/null 2>&1) ||
			{ apt_update_once && (cd "$cache" && apt-get download -q "$pkg" >/dev/null); }
		deb=$(find "$cache" -maxdepth 1 -name "${pkg}_*.deb" | sort | tail -n 1)
	fi
	[ -n "$deb" ] || die "no .deb of $pkg in $cache after apt-get download"
	echo "$deb"
}

# unpack_deb DEB: prints the directory DEB is unpacked in, unpacking once.
unpack_deb() {
	local dir=${1%.deb}
	if [ ! -d "$dir" ]; then
		dpkg-deb -x "$1" "$dir.partial"
		mv "$dir.partial" "$dir"
	fi
	echo "$dir"
}

mkdir -p "$cache"
kpkg=${VMTEST_KERNEL:-$(kernel_package)}
if [ -z "$kpkg" ]; then
	apt_update_once
	kpkg=$(kernel_package)
fi
[ -n "$kpkg" ] || die "apt-cache finds no linux-image-*-cloud-amd64 behind linux-image-cloud-amd64"
kdir=$(unpack_deb "$(fetch_deb "$kpkg")")
bbdir=$(unpack_deb "$(fetch_deb busybox-static)")
kver=${kpkg#linux-image-}
vmlinuz=$kdir/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "$vmlinuz missing from $kpkg"

work=$(mktemp -d /tmp/qnt-vmtest.XXXXXX)
trap 'rm -rf "$work"' EXIT

# selinux_policy: prints the path of the compiled policy the SELinux boot
# loads: Debian's reference policy plus vmtest/selinux/qnetxend.te, built
# in a private copy of the policy store (the host's stays as it is), once
# per policy version and module text.
selinux_policy() {
	local te=$root/vmtest/selinux/qnetxend.te key out store built
	key=$({ dpkg-query -W -f='${Version}' selinux-policy-default && cat "$te"; } | sha256sum | cut -c1-16)
	out=$cache/selinux-policy-$key
	if [ ! -f "$out" ]; then
		log "compiling the reference policy with $te"
		store=$work/selinux
		mkdir -p "$store/module" "$store/root/var/lib/selinux" "$store/root/etc/selinux"
		cp "$te" "$store/module/"
		make -s -C "$store/module" -f /usr/share/selinux/devel/Makefile qnetxend.pp >&2
		cp -a /var/lib/selinux/default "$store/root/var/lib/selinux/"
		cp -a /etc/selinux/config /etc/selinux/semanage.conf /etc/selinux/default "$store/root/etc/selinux/"
		# Only what semodule writes may be found below.
		rm -f "$store/root/etc/selinux/default/policy/"policy.*
		semodule -p "$store/root" -s default -N -i "$store/module/qnetxend.pp" 2>&1 |
			grep -v 'not in password file' >&2 || true
		built=$(find "$store/root/etc/selinux/default/policy" -maxdepth 1 -name 'policy.[0-9]*' | sort -V | tail -n 1)
		[ -n "$built" ] || die "semodule wrote no policy with $te"
		cp "$built" "$out.partial"
		mv "$out.partial" "$out"
	fi
	echo "$out"
}
img=$work/root
mkdir -p "$img"/{bin,sbin,usr/bin,usr/sbin,etc,root,qnet,lib/modules}

# busybox is the VM's shell, init and modprobe (the kernel runs
# /sbin/modprobe to autoload modules).
install -m 0755 "$bbdir/bin/busybox" "$img/bin/busybox"
ln -s busybox "$img/bin/sh"
ln -s ../bin/busybox "$img/sbin/modprobe"
install -m 0755 "$root/vmtest/init" "$img/init"

# Modules: all of netfilter plus veth, closed over their dependencies, with
# a modules.dep and modules.alias made for exactly this set.
kmods=$kdir/lib/modules/$kver
depmod -b "$kdir" "$kver"
want=$(cd "$kmods" && find kernel/net/netfilter kernel/net/ipv4/netfilter kernel/net/ipv6/netfilter \
	kernel/net/bridge/netfilter kernel/drivers/net -name '*.ko*' \( -path '*/netfilter/*' -o -name 'veth.ko*' \))
closure=$(awk -v want="$want" '
	BEGIN { n = split(want, w, "\n"); for (i = 1; i <= n; i++) need[w[i]] = 1 }
	{ sub(":", "", $1); deps[$1] = $0 }
	END {
		do {
			added = 0
			for (m in need) {
				k = split(deps[m], d, " ")
				for (i = 2; i <= k; i++) if (!(d[i] in need)) { need[d[i]] = 1; added = 1 }
			}
		} while (added)
		for (m in need) print m
	}' "$kmods/modules.dep")
mkdir -p "$img/lib/modules/$kver"
# shellcheck disable=SC2086 # one module path a word, none has blanks
(cd "$kmods" && cp --parents $closure modules.order modules.builtin modules.builtin.modinfo "$img/lib/modules/$kver/")
# Newer kernels ship compressed modules; busybox's modprobe may not read them.
find "$img/lib/modules/$kver" -name '*.ko.xz' -exec xz -d {} +
find "$img/lib/modules/$kver" -name '*.ko.zst' -exec zstd -q -d --rm {} +
depmod -b "$img" "$kver"

# Independent checking tools with their shared libraries and the loader.
for tool in "${guest_tools[@]}"; do
	path=$(command -v "$tool") || die "$tool not found on the host"
	install -D -m 0755 "$path" "$img/usr/sbin/$tool"
	for lib in $(ldd "$path" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }'); do
		[ -e "$img$lib" ] || install -D -m 0755 "$(readlink -f "$lib")" "$img$lib"
	done
done
cp /etc/protocols /etc/services "$img/etc/"
# dnsmasq (the sandbox's resolver) looks its user and group up by name.
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$img/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$img/etc/group"

# The project: its static binaries and statically linked test binaries,
# laid out as in the repository so tests find bin/ and testdata/ by
# relative path. tests.list names what init runs, in order.
# bin/ is built by `make build`, which the Makefile's vmtest target runs
# first.
# xen-scripts/ holds the dispatcher hook the binaries' tests run.
cp -r "$root/xen-scripts" "$img/qnet/xen-scripts"
# The RPM's takeover script, which the SELinux boot runs enforcing.
(cd "$root" && cp --parents packaging/takeover.list packaging/rpm/qnet-takeover "$img/qnet/")
install -D -m 0644 "$(selinux_policy)" "$img/qnet/selinux/policy"
if [ -d "$root/bin" ]; then
	cp -r "$root/bin" "$img/qnet/bin"
else
	log "no $root/bin: run make build first; tests of the binaries will fail"
fi
log "building test binaries"
# The library, the commands, and the test plumbing that moved under internal/
# (the demo's test needs a Go toolchain, which the image lacks).
pkgs=${VMTEST_PKGS-$(cd "$root" && go list -f '{{if or .TestGoFiles .XTestGoFiles}}{{.ImportPath}}{{end}}' \
	./pkg/... ./cmd/... ./internal/sandbox ./internal/fake/... ./internal/wire/...)}
mod=$(cd "$root" && go list -m)
for pkg in "$mod/vmtest" $pkgs; do
	rel=${pkg#"$mod"/}
	name=$(basename "$rel").test
	(cd "$root" && CGO_ENABLED=0 go test -c -tags vmtest -trimpath -ldflags='-s -w' \
		-o "$img/qnet/$rel/$name" "$pkg")
	[ -f "$img/qnet/$rel/$name" ] || continue
	[ -d "$root/$rel/testdata" ] && cp -r "$root/$rel/testdata" "$img/qnet/$rel/"
	echo "$rel $name" >>"$img/qnet/tests.list"
done

(cd "$img" && find . | cpio -o -H newc --quiet) >"$work/initrd"
log "initramfs $(du -h "$work/initrd" | cut -f1), kernel $kver"

nonce=$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')

# boot MODE ACCEL SECONDS [KERNEL-ARG...]: boots the image, streams the
# serial console to stdout, and prints nothing else; the console carries the
# status marker.
boot() {
	local mode=$1 acc=$2 secs=$3
	shift 3
	timeout -k 5 "$secs" qemu-system-x86_64 -accel "$acc" -m 1G -smp 2 -nographic -no-reboot \
		-nic none -kernel "$vmlinuz" -initrd "$work/initrd" \
		-append "console=ttyS0 panic=-1 quiet qnet.mode=$mode qnet.nonce=$nonce $*" </dev/null 2>&1 |
		tr -d '\r'
}

# status LOG: the exit status init reported in LOG, or nothing.
status() {
	sed -n "s/^QNET-VMTEST-STATUS $nonce \([0-9][0-9]*\)\$/\1/p" "$1" | tail -n 1
}

if [ "$accel" = auto ]; then
	accel=tcg
	if [ -w /dev/kvm ]; then
		boot probe kvm "$probe_timeout" >"$work/probe.log" || true
		if [ "$(status "$work/probe.log")" = 0 ]; then
			accel=kvm
		else
			log "KVM probe boot failed or hung (bounded to ${probe_timeout}s); using TCG"
		fi
	fi
fi
log "booting under $accel, at most ${vm_timeout}s"
boot test "$accel" "$vm_timeout" | tee "$work/console.log"
rc=$(status "$work/console.log")
if [ -z "$rc" ]; then
	die "the VM ended without reporting a status (crash, or killed after ${vm_timeout}s)"
fi
log "tests exited with status $rc"

log "booting with SELinux (security=selinux, reference policy), at most ${vm_timeout}s"
boot selinux "$accel" "$vm_timeout" security=selinux | tee "$work/selinux.log"
serc=$(status "$work/selinux.log")
if [ -z "$serc" ]; then
	die "the SELinux VM ended without reporting a status (crash, or killed after ${vm_timeout}s)"
fi
log "SELinux tests exited with status $serc"
[ "$rc" -ne 0 ] && exit "$rc"
exit "$serc"
