#!/usr/bin/env bash
# Installs, as root, the Debian packages the tests, the demo and the
# benchmarks need and that this machine lacks. Prints what it installs.
# Usage: scripts/install-deps.sh [extra-package ...]
set -euo pipefail

# command-that-must-exist:debian-package
needs=(
	nft:nftables
	conntrack:conntrack
	xenstore-read:xenstore-utils
	ip:iproute2
	dbus-daemon:dbus
	dnsmasq:dnsmasq-base
	shellcheck:shellcheck
	tcpdump:tcpdump
	ping:iputils-ping
	file:file
	dig:bind9-dnsutils
)

missing=()
for pair in "${needs[@]}"; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done
for pkg in "$@"; do
	dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done

if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
	echo "missing packages: ${missing[*]}" >&2
	echo "install them as root: apt-get install -y ${missing[*]}" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "missing packages: ${missing[*]}; this system has no apt-get, install their equivalents by hand" >&2
	exit 1
fi
echo "installing missing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "installed: ${missing[*]}"
