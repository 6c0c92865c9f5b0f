#!/usr/bin/env bash
# Computes the OpenSSL struct offsets in lib/tls/openssl_offsets.json from two
# sources:
#  1. the OpenSSL source packages Debian ships (bullseye: 1.1.1, bookworm:
#     3.0, trixie: 3.5), Debian's patches applied and Debian's feature
#     switches used;
#  2. the upstream release tags of the branches Debian skipped (3.1 to 3.4,
#     every openssl-3.N.P tag) from a git copy of OpenSSL named by
#     OPENSSL_GIT (a bare git dir is enough), configured with trixie's
#     switches less those a release's Configure does not know yet (3.1 has
#     no enable-zstd, enable-tfo). Releases of one branch whose layouts are
#     identical share one entry, keyed by the newest of them, listing them
#     all in "releases"; a branch whose layout changed in a patch release
#     (3.2.4, 3.3.3 and 3.4.1 added SSL_CONNECTION.user_ssl) gets one entry
#     per layout.
# For each: Configure, generate the headers, build scripts/openssl_offsets.c
# against the internal headers and run it. Not run by CI; it documents where
# the numbers come from.
#   OPENSSL_GIT=/path/to/openssl.git bash scripts/openssl_offsets.sh > lib/tls/openssl_offsets.json
# Without OPENSSL_GIT only the Debian entries are made. Needs: apt-get,
# dpkg-source (dpkg-dev), perl, make, gcc, git; network access to this
# machine's Debian mirror. Progress goes to stderr.
#
# The upstream entries were checked live (not by CI, which has no upstream
# sources): for a release tag TAG,
#   git --git-dir="$OPENSSL_GIT" archive TAG | tar -x -C DIR  # (*)
#   cd DIR && ./Configure linux-x86_64 shared no-tests no-docs && make -j2 build_libs
#   nginx serving HTTPS on 127.0.0.1:PORT (Debian's, system OpenSSL 3.0)
#   tshark -i lo -f "tcp port PORT" -w cap.pcapng &
#   deno run -A cli.ts tls --libssl DIR/libssl.so.3 -m keylog -k keys.log &
#   LD_LIBRARY_PATH=DIR curl -sk --http1.1 --tlsv1.3 https://127.0.0.1:PORT/...
#   LD_LIBRARY_PATH=DIR curl -sk --http1.1 --tls-max 1.2 https://127.0.0.1:PORT/...
#   (stop tshark and ecap with SIGINT)
#   tshark -r cap.pcapng -o tls.keylog_file:keys.log -Y http.request -T fields -e http.request.uri
# Debian's curl links libssl.so.3, which every 3.x release keeps as its
# soname, so LD_LIBRARY_PATH swaps the release in; every request must show.
# Done for 3.3.5 and 3.4.3 (curl: TLS 1.3 AES-128 and AES-256/SHA-384, TLS
# 1.2 AES-GCM and ChaCha20): 4 handshakes, 12 key log lines, the 4 client
# randoms those of the 4 ClientHellos, tshark decrypting all 4 requests (0
# without the key log). With 3.3.0's layout instead, 3.3.5 gave no keys.
# (*) a copy without files of 4 MiB and more lacks the test data file
# test/recipes/30-test_evp_data/evprand.txt: add
# -- . ':(exclude)test/recipes/30-test_evp_data/evprand.txt' to git archive.
set -euo pipefail

SUITES=(bullseye bookworm trixie)
here=$(cd "$(dirname "$0")" && pwd)
. "$here/private_apt.sh"
prog=$here/openssl_offsets.c

say() { echo "openssl_offsets: $*" >&2; }
die() { echo "openssl_offsets: $*" >&2; exit 1; }

for t in apt-get apt-cache dpkg-source perl make gcc; do
	command -v "$t" >/dev/null || die "$t not found (apt-get install dpkg-dev perl make gcc)"
done
[ -f "$prog" ] || die "$prog not found"
# The upstream branches measured from OPENSSL_GIT's release tags.
UPSTREAM_BRANCHES=(3.1 3.2 3.3 3.4)
git=${OPENSSL_GIT:-}
if [ -n "$git" ]; then
	command -v git >/dev/null || die "git not found (apt-get install git)"
	git --git-dir="$git" rev-parse --verify -q openssl-3.1.0^{commit} >/dev/null ||
		die "OPENSSL_GIT=$git: no openssl-3.1.0 tag there"
else
	say "OPENSSL_GIT not set: only the Debian entries (not ${UPSTREAM_BRANCHES[*]}) are made"
fi

tmp=$(mktemp -d /tmp/openssl-offsets.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
private_apt "$tmp/apt" "deb-src" "${SUITES[@]}"

# The Configure switches Debian's debian/rules passes (CONFARGS), minus the
# paths and the no-padlockeng it adds only off x86.
debian_confargs() {
	sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1/debian/rules" |
		grep -E '^[[:space:]]*CONFARGS[[:space:]]*\+?=' |
		tr -s ' \t' '\n\n' | grep -E '^(no|enable)-' | grep -vx 'no-padlockeng' | sort -u
}

# Builds $prog in the configured tree $1 and prints its JSON for family $2.
measure() {
	local def=
	# C cannot ask whether a member exists: SSL_CONNECTION.user_ssl came in
	# 3.2.4, 3.3.3, 3.4.1 and 3.5.0
	grep -q 'SSL \*user_ssl;' "$1/ssl/ssl_local.h" && def=-DHAVE_USER_SSL
	gcc -O0 -w $def -I"$1" -I"$1/include" -I"$1/ssl" -o "$1/offsets.bin" "$prog" || return 1
	"$1/offsets.bin" "$2"
}

entries=()
upstream_confargs=()
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
	entry=$(measure "$src" "$family") || die "$suite: compiling $prog failed"
	# the newest Debian's switches serve the upstream releases too
	[ "$suite" = "${SUITES[-1]}" ] && upstream_confargs=("${confargs[@]}")
	# Record the Debian package version alongside the numbers.
	entry=$(printf '%s\n' "$entry" | sed "2i\\    \"debian_version\": \"$got\",")
	entries+=("    \"$upstream\": $entry")
	rm -rf "$dir"
done

# Upstream release tags, oldest first within each branch.
for branch in "${UPSTREAM_BRANCHES[@]}"; do
	[ -n "$git" ] || break
	mapfile -t tags < <(git --git-dir="$git" tag -l "openssl-$branch.*" | grep -E "^openssl-$branch\.[0-9]+\$" | sort -V)
	[ "${#tags[@]}" -gt 0 ] || die "no openssl-$branch.* tags in $git"
	group= group_layout= group_entry=
	flush() {
		[ -n "$group" ] || return 0
		local newest=${group##* } list
		list=$(printf '"%s", ' $group)
		entries+=("    \"$newest\": $(printf '%s\n' "$group_entry" |
			sed "2i\\    \"git_tag\": \"openssl-$newest\",\n    \"releases\": [${list%, }],")")
	}
	for tag in "${tags[@]}"; do
		v=${tag#openssl-}
		dir=$tmp/$tag
		mkdir -p "$dir/src"
		say "$tag: git archive"
		# a snapshot may lack this big test data file; it is not needed here
		git --git-dir="$git" archive "$tag" -- . ':(exclude)test/recipes/30-test_evp_data/evprand.txt' |
			tar -x -C "$dir/src" || die "$tag: git archive failed"
		args=("${upstream_confargs[@]}")
		if ! (cd "$dir/src" && ./Configure linux-x86_64 no-shared "${args[@]}" >"$dir/configure.log" 2>&1); then
			bad=" $(sed -n 's/^\*\*\*\*\* Unsupported options: //p' "$dir/configure.log" | tr -d ',') "
			[ "$bad" != "  " ] || die "$tag: Configure failed (see $dir/configure.log)"
			args=()
			for a in "${upstream_confargs[@]}"; do [[ $bad == *" $a "* ]] || args+=("$a"); done
			(cd "$dir/src" && ./Configure linux-x86_64 no-shared "${args[@]}" >"$dir/configure.log" 2>&1) ||
				die "$tag: Configure failed (see $dir/configure.log)"
		fi
		say "$tag: Configure linux-x86_64 no-shared ${args[*]}; make build_generated"
		(cd "$dir/src" && make -s build_generated >"$dir/make.log" 2>&1) || die "$tag: make build_generated failed"
		entry=$(measure "$dir/src" "$branch") || die "$tag: compiling $prog failed"
		# the layout: everything but the version number
		layout=$(printf '%s\n' "$entry" | grep -v '"openssl_version_number"')
		if [ "$layout" = "$group_layout" ]; then
			group="$group $v" group_entry=$entry
		else
			flush
			group=$v group_layout=$layout group_entry=$entry
		fi
		rm -rf "$dir"
	done
	flush
done

source="Debian source packages"
[ -n "$git" ] && source="$source; upstream git tags"
printf '{\n  "source": "%s",\n  "versions": {\n' "$source"
for i in "${!entries[@]}"; do
	sep=,
	[ "$i" -eq $((${#entries[@]} - 1)) ] && sep=
	# indent the nested object by two more spaces
	printf '%s%s\n' "$(printf '%s\n' "${entries[$i]}" | sed '2,$s/^/  /')" "$sep"
done
printf '  }\n}\n'
say "done"
