#!/usr/bin/env bash
# Builds the qnet .deb with Debian's own dpkg-deb from the `make install`
# tree, reproducibly: the same sources, VERSION and SOURCE_DATE_EPOCH give
# the same bytes. Prints the path of the package it wrote.
# Usage: scripts/build-deb.sh [-o OUTDIR]   (default OUTDIR: dist)
# Environment: VERSION (default: git describe), SOURCE_DATE_EPOCH (default:
# the last commit's time), DEB_MAINTAINER, MAKE, GO.
set -euo pipefail

# shellcheck source=scripts/package-common.sh
. "$(dirname "$0")/package-common.sh"
maintainer=${DEB_MAINTAINER:-qnet maintainers <qnet@example.invalid>}
debversion=$pkgversion

goarch=$(${GO:-go} env GOARCH)
case $goarch in
386) arch=i386 ;;
arm) arch=armhf ;;
*) arch=$goarch ;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
stage=$work/root
umask 022

"${MAKE:-make}" -C "$root" --no-print-directory install \
	DESTDIR="$stage" PREFIX=/usr SYSCONFDIR=/etc VERSION="$VERSION" >&2

# Debian policy: manual pages compressed with gzip -9n, a copyright file.
find "$stage/usr/share/man" -type f -exec gzip -9n {} +
install -D -m 0644 "$root/LICENSE" "$stage/usr/share/doc/qnet/copyright"

debian=$stage/DEBIAN
mkdir -p "$debian"
diversions=$work/diversions
grep -v -e '^#' -e '^$' "$root/packaging/takeover.list" |
	while read -r path; do
		printf '%s %s/.%s.qubes-orig\n' "$path" "${path%/*}" "${path##*/}"
	done >"$diversions"
for script in preinst postinst prerm postrm; do
	awk -v list="$diversions" '
		$0 == "@DIVERSIONS@" { while ((getline line < list) > 0) print line; next }
		{ print }' "$root/packaging/debian/$script" >"$debian/$script"
	chmod 0755 "$debian/$script"
done
(cd "$stage" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
	LC_ALL=C sort -z | xargs -0 md5sum) >"$debian/md5sums"
# Installed-Size as dpkg-gencontrol counts it (KiB per file rounded up, one
# per directory), not du, whose answer depends on the filesystem.
size=$(cd "$stage" && find . -path ./DEBIAN -prune -o ! -path . -printf '%y %s\n' |
	awk '{ n += ($1 == "f") ? int(($2 + 1023) / 1024) : 1 } END { print n + 0 }')
sed -e "s|@VERSION@|$debversion|" -e "s|@ARCH@|$arch|" \
	-e "s|@MAINTAINER@|$maintainer|" -e "s|@INSTALLED_SIZE@|$size|" \
	"$root/packaging/debian/control" >"$debian/control"
chmod 0644 "$debian/control" "$debian/md5sums"

# Modes and times are part of the bytes: pin both, whatever the umask or
# clock of the build, and let dpkg-deb record root:root as owner.
find "$stage" -type d -exec chmod 0755 {} +
find "$stage" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
deb=$outdir/qnet_${debversion}_$arch.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >&2
echo "$deb"
