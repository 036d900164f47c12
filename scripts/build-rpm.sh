#!/usr/bin/env bash
# Builds the qnet RPM with rpmbuild from a source tarball that carries
# vendor/ (made here with `go mod vendor`, never committed), so that the
# build itself needs no network. Prints the path of the binary RPM.
# On Debian, where the build requirements are not RPMs, it builds with
# --nodeps and loads packaging/rpm/macros.fallback (see packaging/README.md).
# Usage: scripts/build-rpm.sh [-o OUTDIR]   (default OUTDIR: dist)
# Environment: VERSION (default: git describe), SOURCE_DATE_EPOCH (default:
# the last commit's time), GO.
set -euo pipefail

# shellcheck source=scripts/package-common.sh
. "$(dirname "$0")/package-common.sh"
command -v rpmbuild >/dev/null || {
	echo "rpmbuild is missing: apt-get install rpm (Debian) or dnf install rpm-build (Fedora)" >&2
	exit 1
}
rpmversion=$pkgversion

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
top=$work/rpmbuild
src=qnet-$rpmversion
mkdir -p "$top/SOURCES" "$work/$src"

# The files git knows of (tracked, and new ones not ignored), as they are in
# the work tree, plus the modules they need.
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
	tar --null -T - --ignore-failed-read -cf -) | tar -C "$work/$src" -xf -
(cd "$work/$src" && GOFLAGS=-mod=mod ${GO:-go} mod vendor)
tar -C "$work" --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
	-cf - "$src" | gzip -9n >"$top/SOURCES/$src.tar.gz"

args=(-bb --define "_topdir $top" --define "_rpmdir $outdir"
	--define '_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm'
	--define "qnet_version $rpmversion" --define "qnet_build_version $VERSION"
	--define 'use_source_date_epoch_as_buildtime 1' --define 'clamp_mtime_to_source_epoch 1'
	--define '_buildhost qnet-build')
if [ "$(rpm --eval '%{?systemd_post:1}')" != 1 ]; then
	args+=(--load "$root/packaging/rpm/macros.fallback")
fi
if ! rpm -q --whatprovides golang make systemd-rpm-macros >/dev/null 2>&1; then
	echo "build-rpm: golang, make and systemd-rpm-macros are not RPMs here; building with --nodeps" >&2
	args+=(--nodeps)
fi
rpmbuild "${args[@]}" "$root/packaging/rpm/qnet.spec" >&2
rpm=$(find "$outdir" -maxdepth 1 -name "qnet-$rpmversion-1*.rpm" ! -name '*.src.rpm' | sort | tail -n 1)
[ -n "$rpm" ] || {
	echo "build-rpm: rpmbuild wrote no qnet-$rpmversion RPM into $outdir" >&2
	exit 1
}
echo "$rpm"
