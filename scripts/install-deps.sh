#!/usr/bin/env bash
# Installs, as root, the system packages the tests, the demo and the
# benchmarks need and that this machine lacks, naming each. Uses apt-get
# (Debian, Ubuntu, Qubes' Debian templates) or dnf (Fedora); elsewhere it
# prints what to install and fails.
# Usage: scripts/install-deps.sh [extra-debian-package ...]
set -euo pipefail

# command-that-must-exist:debian-package:fedora-package
needs=(
	nft:nftables:nftables
	conntrack:conntrack:conntrack-tools
	xenstore-read:xenstore-utils:xen-runtime
	ip:iproute2:iproute
	dbus-daemon:dbus:dbus-daemon
	dnsmasq:dnsmasq-base:dnsmasq
	shellcheck:shellcheck:ShellCheck
	tcpdump:tcpdump:tcpdump
	ping:iputils-ping:iputils
	file:file:file
	dig:bind9-dnsutils:bind-utils
	rpmbuild:rpm:rpm-build
	busybox:busybox-static:busybox
)

have() { command -v "$1" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$1" >/dev/null 2>&1; }

if have apt-get; then
	manager=apt-get field=2
elif have dnf; then
	manager=dnf field=3
else
	manager='' field=2
fi

missing=()
for entry in "${needs[@]}"; do
	IFS=: read -r cmd deb rpm <<<"$entry"
	if ! have "$cmd"; then
		if [ "$field" = 3 ]; then missing+=("$rpm"); else missing+=("$deb"); fi
	fi
done
if [ "$manager" = apt-get ]; then
	for pkg in "$@"; do
		dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
	done
fi

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
case $manager in
apt-get) line="apt-get install -y ${missing[*]}" ;;
dnf) line="dnf install -y ${missing[*]}" ;;
*)
	echo "missing commands; this system has neither apt-get nor dnf. Install the packages that provide: ${missing[*]} (Debian names)" >&2
	exit 1
	;;
esac
if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages: ${missing[*]}" >&2
	echo "install them as root: $line" >&2
	exit 1
fi
echo "installing missing packages: ${missing[*]}"
if [ "$manager" = apt-get ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
	dnf install -y -q "${missing[@]}"
fi
echo "installed: ${missing[*]}"
