#!/usr/bin/env bash
# Computes lib/tls/boringssl_offsets.json: where Debian's BoringSSL
# (android-libboringssl, source android-platform-external-boringssl) keeps
# what ecap reads for its key log, from the exact source Debian built, its
# patches applied, compiled with the flags of its debian/rules and
# debian/libssl.mk that can change layouts. Each entry also records the
# GNU build-id of the libssl.so.0 Debian shipped from that source (from the
# binary package), so ecap gives keys for that build only.
#   bash scripts/boringssl_offsets.sh > lib/tls/boringssl_offsets.json
# Needs: apt-get, dpkg-source, dpkg-deb (dpkg-dev), g++, readelf (binutils);
# network access to this machine's Debian mirror. The system's apt
# configuration is not touched: sources and lists live in a temporary
# directory. Progress goes to stderr.
set -euo pipefail

# Suites whose build ecap was tested against (tests/capture_tls_releases_test.ts).
SUITES=(bookworm)
ARCH=amd64
SRC_PKG=android-platform-external-boringssl
BIN_PKG=android-libboringssl
here=$(cd "$(dirname "$0")" && pwd)
. "$here/private_apt.sh"
prog=$here/boringssl_offsets.cc

say() { echo "boringssl_offsets: $*" >&2; }
die() { echo "boringssl_offsets: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-source dpkg-deb g++ readelf; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install dpkg-dev g++ binutils)"
done
[ -f "$prog" ] || die "$prog not found"

tmp=$(mktemp -d /tmp/boringssl-offsets.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
APT_ARCH=$ARCH private_apt "$tmp/apt" "deb deb-src" "${SUITES[@]}"

# The preprocessor switches debian/rules appends (DEB_CPPFLAGS_MAINT_APPEND):
# -D/-U only; the others do not change layouts.
debian_defines() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1/debian/rules" |
		grep -E '^[[:space:]]*export[[:space:]]+DEB_CPPFLAGS_MAINT_APPEND' |
		tr -s ' \t' '\n\n' | grep -E '^-[DU]'
}
# The C++ dialect debian/libssl.mk compiles libssl with.
debian_std() {
	grep -oE -- '-std=[a-z0-9+]+' "$1/debian/libssl.mk" | head -1
}

entries=()
for suite in "${SUITES[@]}"; do
	dir=$tmp/$suite
	mkdir -p "$dir"
	versions=$(apt-cache "${apt_opts[@]}" madison "$SRC_PKG" | awk -F'|' -v s="$suite/main Sources" \
		'index($3, s) {gsub(/ /, "", $2); print $2}' | sort -rV)
	[ -n "$versions" ] || die "no $SRC_PKG source in $suite"
	v=$(echo "$versions" | head -1)
	say "$suite: apt-get source $SRC_PKG=$v"
	(cd "$dir" && apt-get "${apt_opts[@]}" source -qq --download-only "$SRC_PKG=$v" >&2) ||
		die "$suite: $SRC_PKG=$v not downloadable"
	(cd "$dir" && dpkg-source -x ./*.dsc src >"$dir/extract.log" 2>&1) ||
		die "$suite: dpkg-source -x failed"
	src=$dir/src
	mapfile -t defines < <(debian_defines "$src")
	std=$(debian_std "$src")
	[ -n "$std" ] || std=-std=gnu++17
	say "$suite: g++ $std ${defines[*]}"
	g++ "$std" -O0 -w -Wno-invalid-offsetof -fno-exceptions "${defines[@]}" \
		-I"$src/src/include" -I"$src/src" -o "$dir/offsets" "$prog" ||
		die "$suite: compiling $prog failed"
	entry=$("$dir/offsets" "$v")

	# The library Debian built from this source: its build-id names the layout.
	say "$suite: apt-get download $BIN_PKG:$ARCH=$v"
	(cd "$dir" && apt-get "${apt_opts[@]}" download -qq "$BIN_PKG:$ARCH=$v" >&2) ||
		die "$suite: $BIN_PKG=$v not downloadable"
	dpkg-deb -x "$dir"/"${BIN_PKG}"_*.deb "$dir/bin"
	lib=$(find "$dir/bin" -name libssl.so.0 -type f | head -1)
	[ -n "$lib" ] || die "$suite: no libssl.so.0 in $BIN_PKG"
	build_id=$(readelf -n "$lib" | awk '/Build ID:/ {print $3}')
	[ -n "$build_id" ] || die "$suite: $lib has no build-id"
	say "$suite: libssl.so.0 build-id $build_id"
	entry=$(printf '%s\n' "$entry" | sed "2a\\  \"build_id\": \"$build_id\",\\n  \"arch\": \"$ARCH\",\\n  \"suite\": \"$suite\",")
	entries+=("$entry")
	rm -rf "$dir"
done

printf '{\n  "source": "Debian source package %s, scripts/boringssl_offsets.sh",\n  "builds": [\n' "$SRC_PKG"
for i in "${!entries[@]}"; do
	sep=,
	[ "$i" -eq $((${#entries[@]} - 1)) ] && sep=
	printf '%s%s\n' "$(printf '%s\n' "${entries[$i]}" | sed 's/^/    /')" "$sep"
done
printf '  ]\n}\n'
say "done"
