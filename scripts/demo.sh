#!/usr/bin/env bash
# The one command of `make demo`: as root, installs the packages the demo
# needs (naming each), builds the binaries and runs the demo program
# (internal/demo). `--clean` (make demo-clean) removes a kept demo.
# Usage: scripts/demo.sh [--keep] [-v] | --clean
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH

if [ "$(id -u)" -ne 0 ]; then
	echo "demo: needs root (it creates network namespaces and nftables rules); nothing was touched." >&2
	echo "run: sudo make demo" >&2
	exit 1
fi
if ! command -v go >/dev/null 2>&1; then
	echo "demo: the Go toolchain is missing (go.mod names the version); install it from https://go.dev/dl/ into /usr/local/go" >&2
	exit 1
fi

work=$(mktemp -d /tmp/qnet-demo-build.XXXXXX)
trap 'rm -rf "$work"' EXIT
build_demo() {
	CGO_ENABLED=0 go build -o "$work/demo" ./internal/demo
}

if [ "${1:-}" = --clean ]; then
	build_demo
	"$work/demo" --clean
	exit
fi

scripts/install-deps.sh
make --no-print-directory -s build
build_demo
status=0
"$work/demo" --bin-dir bin "$@" || status=$?
exit "$status"
