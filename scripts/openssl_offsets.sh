#!/usr/bin/env bash
# Computes the OpenSSL struct offsets in lib/openssl_offsets.json from the
# OpenSSL source packages Debian ships (bullseye: 1.1.1, bookworm: 3.0,
# trixie: 3.5), Debian's patches applied and Debian's feature switches used.
# For each: Configure, generate the headers, build scripts/openssl_offsets.c
# against the internal headers and run it. Not run by CI; it documents where
# the numbers come from.
#   bash scripts/openssl_offsets.sh > lib/openssl_offsets.json
# Needs: apt-get, dpkg-source (dpkg-dev), perl, make, gcc; network access to
# this machine's Debian mirror. Progress goes to stderr.
set -euo pipefail

SUITES=(bullseye bookworm trixie)
here=$(cd "$(dirname "$0")" && pwd)
prog=$here/openssl_offsets.c

say() { echo "openssl_offsets: $*" >&2; }
die() { echo "openssl_offsets: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-source perl make gcc; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install dpkg-dev perl make gcc)"
done
[ -f "$prog" ] || die "$prog not found"

tmp=$(mktemp -d /tmp/openssl-offsets.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
apt_dir=$tmp/apt
mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"

# A private deb-src list built from this machine's own Debian mirror.
uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}' || true)
[ -n "$uri" ] || uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)
[ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
cat >"$apt_dir/sources/src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: ${SUITES[*]}
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
	-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
say "apt-get update (deb-src ${SUITES[*]})"
apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update of the source list failed"

# The Configure switches Debian's debian/rules passes (CONFARGS), minus the
# paths and the no-padlockeng it adds only off x86.
debian_confargs() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1/debian/rules" |
		grep -E '^[[:space:]]*CONFARGS[[:space:]]*\+?=' |
		tr -s ' \t' '\n\n' | grep -E '^(no|enable)-' | grep -vx 'no-padlockeng' | sort -u
}

entries=()
for suite in "${SUITES[@]}"; do
	dir=$tmp/$suite
	mkdir -p "$dir"
	# Newest first; a mirror snapshot may list a version whose files are gone.
	versions=$(apt-cache "${apt_opts[@]}" madison openssl | awk -F'|' -v s="$suite/main Sources" \
		'index($3, s) {gsub(/ /, "", $2); print $2}' | sort -rV)
	[ -n "$versions" ] || die "no openssl source in $suite"
	got=
	for v in $versions; do
		say "$suite: apt-get source openssl=$v"
		if (cd "$dir" && apt-get "${apt_opts[@]}" source -qq --download-only "openssl=$v" >&2 2>"$dir/apt.err"); then
			got=$v
			break
		fi
		say "$suite: openssl=$v not downloadable ($(tail -1 "$dir/apt.err")), trying an older one"
		rm -f "$dir"/openssl_*
	done
	[ -n "$got" ] || die "$suite: no openssl source could be downloaded"
	(cd "$dir" && dpkg-source -x ./*.dsc src >"$dir/extract.log" 2>&1) || die "$suite: dpkg-source -x failed (see $dir/extract.log)"
	src=$dir/src
	upstream=${got%%-*}
	upstream=${upstream#*:}
	case $upstream in
	1.1.1*) family=1.1.1 ;;
	*) family=$(echo "$upstream" | cut -d. -f1,2) ;;
	esac
	mapfile -t confargs < <(debian_confargs "$src")
	say "$suite: openssl $got (family $family): Configure linux-x86_64 no-shared ${confargs[*]}"
	(cd "$src" && ./Configure linux-x86_64 no-shared "${confargs[@]}" >"$dir/configure.log" 2>&1) ||
		die "$suite: Configure failed (see $dir/configure.log)"
	say "$suite: make build_generated"
	(cd "$src" && make -s build_generated >"$dir/make.log" 2>&1) || die "$suite: make build_generated failed"
	say "$suite: compiling $(basename "$prog")"
	gcc -O0 -w -I"$src" -I"$src/include" -I"$src/ssl" -o "$dir/offsets" "$prog" ||
		die "$suite: compiling $prog failed"
	entry=$("$dir/offsets" "$family")
	# Record the Debian package version alongside the numbers.
	entry=$(printf '%s\n' "$entry" | sed "2i\\    \"debian_version\": \"$got\",")
	entries+=("    \"$upstream\": $entry")
	rm -rf "$dir"
done

printf '{\n  "source": "Debian source packages",\n  "versions": {\n'
for i in "${!entries[@]}"; do
	sep=,
	[ "$i" -eq $((${#entries[@]} - 1)) ] && sep=
	# indent the nested object by two more spaces
	printf '%s%s\n' "$(printf '%s\n' "${entries[$i]}" | sed '2,$s/^/  /')" "$sep"
done
printf '  }\n}\n'
say "done"
