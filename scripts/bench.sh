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
		name = $1; sub(/-[0-9]+$/, "", name)
		printf "%s\n", name
		for (i = 5; i < NF; i += 2) { printf "    %-22s %8.2f\n", $(i+1), $i; v[name, $(i+1)] = $i }
	}
	END {
		h = "BenchmarkHotplug/others=0/conntrack=0"; c = "BenchmarkHotplug/others=0/conntrack=20000"; g = "BenchmarkGracePeriod"
		if (!((h, "cycle-median-ms") in v)) exit
		grace = v[g, "element-delete-median-ms"] - v[g, "element-add-median-ms"]
		floor = v[h, "dry-run-median-ms"] + grace
		print "== against the targets (medians)"
		printf "    online %.2f ms (target <= 6)\n", v[h, "online-median-ms"]
		printf "    cycle %.2f ms; floor %.2f ms (dry-run %.2f + grace period %.2f); target <= floor + 5\n", v[h, "cycle-median-ms"], floor, v[h, "dry-run-median-ms"], grace
		if ((c, "cycle-median-ms") in v)
			printf "    cycle with 20000 conntrack entries %.2f ms = %.2fx the cycle without (target <= 1.5x)\n", v[c, "cycle-median-ms"], v[c, "cycle-median-ms"] / v[h, "cycle-median-ms"]
		rss = 0
		for (k in v) { split(k, kk, SUBSEP); if (kk[2] == "peak-rss-MiB" && v[k] > rss) rss = v[k] }
		printf "    peak RSS %.2f MiB (target <= 16)\n", rss
	}'
