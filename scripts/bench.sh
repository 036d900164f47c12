#!/usr/bin/env bash
# Benchmarks both binaries as a whole process, run exactly as Xen and
# NetworkManager run them, inside sandbox namespaces (as root). Prints the
# figures the README quotes: median and p90 wall time, peak RSS, binary size.
# Usage: scripts/bench.sh [RUNS]   (default 30 runs per figure)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
runs=${1:-30}

[ "$(id -u)" -eq 0 ] || { echo "bench: must run as root (it builds network namespaces)" >&2; exit 1; }
scripts/install-deps.sh

echo "== binary sizes"
for b in bin/vif-route-qubes bin/qubes-setup-dnat-to-ns; do
	awk -v n="$(basename "$b")" -v s="$(stat -c %s "$b")" 'BEGIN { printf "%-28s %6.2f MiB\n", n, s / 1048576 }'
done

pkgs=(./cmd/vif-route-qubes)
if grep -qs '^func Benchmark' cmd/qubes-setup-dnat-to-ns/*_test.go; then
	pkgs+=(./cmd/qubes-setup-dnat-to-ns)
fi
echo "== whole-process runs ($runs each; times in ms, RSS in MiB)"
go test -run '^$' -bench . -benchtime "${runs}x" -timeout 30m "${pkgs[@]}" |
	awk '/^Benchmark/ {
		printf "%s\n", $1
		for (i = 5; i < NF; i += 2) printf "    %-22s %8.2f\n", $(i+1), $i
	}'
