# shellcheck shell=bash
# Sourced by build-deb.sh and build-rpm.sh with their arguments: reads
# -o OUTDIR (default dist, created) and sets root, outdir, VERSION (default:
# git describe), SOURCE_DATE_EPOCH (default: the last commit's time,
# exported) and pkgversion, the version as both package formats accept it:
# it starts with a digit and has no hyphen, so v1.2-3-gabc-dirty becomes
# 1.2+3+gabc+dirty, and a bare commit id (no tag yet) abc-dirty becomes
# 0~gitabc+dirty, before any release.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
outdir=$root/dist
# Where the Makefile finds Go, so that GOARCH is the one it builds for.
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
while getopts o: opt; do
	case $opt in
	o) outdir=$OPTARG ;;
	*)
		echo "usage: $0 [-o OUTDIR]" >&2
		exit 2
		;;
	esac
done
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

VERSION=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH

pkgversion=${VERSION#v}
if [[ $VERSION =~ ^[0-9a-f]{7,}(-dirty)?$ || ! $pkgversion =~ ^[0-9] ]]; then
	pkgversion=0~git$VERSION
fi
pkgversion=${pkgversion//-/+}
