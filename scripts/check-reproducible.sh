#!/usr/bin/env bash
# Checks that two clean builds give byte-identical binaries and .deb: the
# tree is copied to two directories of different paths and each is built
# with its own empty Go build cache, with the same VERSION and
# SOURCE_DATE_EPOCH. Exits 1 and names the files that differ otherwise.
# Usage: scripts/check-reproducible.sh
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
VERSION=${VERSION:-$(git -C "$root" describe --tags --always --dirty 2>/dev/null || echo unknown)}
SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}
export VERSION SOURCE_DATE_EPOCH

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The sources as git sees them: tracked and untracked-but-not-ignored files,
# so a build output in the tree cannot leak into the copies.
(cd "$root" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done) >"$work/files"

build() {
	local tree=$1
	mkdir -p "$tree"
	tar -C "$root" --null -T "$work/files" -cf - | tar -C "$tree" -xf -
	GOCACHE=$tree.gocache "$tree/scripts/build-deb.sh" -o "$tree.out" >/dev/null
	cp "$tree"/bin/* "$tree.out/"
}

build "$work/a"
build "$work/build-b"

status=0
for f in "$work"/a.out/*; do
	name=${f##*/}
	if cmp -s "$f" "$work/build-b.out/$name"; then
		echo "identical: $name $(sha256sum <"$f" | cut -d' ' -f1)"
	else
		echo "DIFFERS: $name" >&2
		status=1
	fi
done
exit $status
