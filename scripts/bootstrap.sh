#!/usr/bin/env bash
# Installs what ecap needs to build and test, idempotently, on Debian 12:
# Debian's toolchain, the pinned Deno from npm, and libbpf/libelf/zlib built
# static and position-independent (Debian's own .a files are not PIC), and
# libpcap likewise.
# Prints the environment to use (ECAP_DEPS, DENO) as shell assignments.
#   scripts/bootstrap.sh [--test]   --test adds the programs the tests drive
set -euo pipefail

DENO_VERSION=2.9.6
LIBBPF_SUITE=trixie # serves libbpf 1.5 (tcx, BPF_UPROBE); bookworm has 1.1
CACHE=${ECAP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecap}
DEPS=$CACHE/deps-v1
TOOLS_DIR=$CACHE/deno-$DENO_VERSION

say() { echo "bootstrap: $*" >&2; }
die() { echo "bootstrap: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root to install packages (try: sudo $0)"
command -v apt-get >/dev/null || die "apt-get not found: ecap's bootstrap supports Debian 12 only"

BUILD_PKGS=(clang-19 llvm-19 bpftool gcc make pkg-config dpkg-dev m4 gawk flex bison ca-certificates)
TEST_PKGS=(bsdextrautils chromium firefox-esr fonts-dejavu-core brotli zstd tmux bash zsh procps iproute2 curl binutils util-linux nginx-light openssl python3 mariadb-server mariadb-client postgresql python3-pymysql python3-psycopg tshark tcpdump wrk libssl-dev libgnutls28-dev android-libboringssl android-libboringssl-dev bpftrace gnutls-bin libnss3-tools golang-go wget)
want=("${BUILD_PKGS[@]}")
[ "${1:-}" = "--test" ] && want+=("${TEST_PKGS[@]}")
command -v npm >/dev/null || want+=(npm) # Node from elsewhere brings its own npm

missing=()
for p in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
		die "apt-get install ${missing[*]} failed"
fi

if [ ! -x "$TOOLS_DIR/node_modules/.bin/deno" ]; then
	say "installing deno $DENO_VERSION from npm"
	mkdir -p "$TOOLS_DIR"
	npm install --silent --no-audit --no-fund --prefix "$TOOLS_DIR" "deno@$DENO_VERSION" >&2 ||
		die "npm install deno@$DENO_VERSION failed"
fi
DENO=$TOOLS_DIR/node_modules/.bin/deno
"$DENO" --version >/dev/null || die "$DENO does not run"

# Debian source packages, unpacked into $1, from a private deb-src list built
# from this machine's own Debian mirror: fetch_sources DIR PACKAGE/SUITE...
fetch_sources() {
	local src=$1 apt_dir=$1/.apt uri
	shift
	mkdir -p "$src" "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
	[ -n "$uri" ] || uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
	[ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
	cat >"$apt_dir/sources/src.sources" <<SRC
Types: deb-src
URIs: $uri
Suites: bookworm $LIBBPF_SUITE
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
	local apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
	apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update of the source list failed"
	(cd "$src" && apt-get "${apt_opts[@]}" source -qq --download-only "$@" >&2) ||
		die "apt-get source $* failed"
	(cd "$src" && for d in *.dsc; do dpkg-source -x --skip-patches "$d" >/dev/null 2>&1; done)
	rm -rf "$apt_dir"
}

# Static, PIC libbpf + libelf + zlib from Debian's source packages.
if [ ! -f "$DEPS/.done" ]; then
	say "building libbpf, libelf and zlib static and PIC in $DEPS (about a minute)"
	rm -rf "$DEPS"
	src=$DEPS/src
	mkdir -p "$DEPS/lib" "$DEPS/include"
	fetch_sources "$src" "libbpf/$LIBBPF_SUITE" elfutils/bookworm zlib/bookworm

	(cd "$src"/zlib-*/ && CFLAGS="-O2 -fPIC" ./configure --static >/dev/null && make -s libz.a >/dev/null 2>&1) || die "zlib build failed"
	cp "$src"/zlib-*/libz.a "$DEPS/lib/"
	cp "$src"/zlib-*/zlib.h "$src"/zlib-*/zconf.h "$DEPS/include/"

	(cd "$src"/elfutils-*/ && ./configure -q --disable-debuginfod --disable-libdebuginfod --without-zstd \
		--without-bzlib --without-lzma CFLAGS="-O2 -g -fPIC -I$DEPS/include" LDFLAGS="-L$DEPS/lib" >/dev/null &&
		make -s -C lib >/dev/null 2>&1 && make -s -C libelf libelf_pic.a >/dev/null 2>&1) || die "libelf build failed"
	cp "$src"/elfutils-*/libelf/libelf_pic.a "$DEPS/lib/libelf.a"
	cp "$src"/elfutils-*/libelf/libelf.h "$src"/elfutils-*/libelf/gelf.h "$src"/elfutils-*/libelf/nlist.h "$DEPS/include/"

	mkdir -p "$DEPS/libbpf-obj"
	(cd "$src"/libbpf-*/ && make -s -C src BUILD_STATIC_ONLY=1 OBJDIR="$DEPS/libbpf-obj" DESTDIR="$DEPS/root" \
		PREFIX=/ LIBDIR=/lib INCLUDEDIR=/include CFLAGS="-g -O2 -fPIC -I$DEPS/include" install >/dev/null 2>&1) ||
		die "libbpf build failed"
	cp "$DEPS/root/lib/libbpf.a" "$DEPS/lib/"
	cp -r "$DEPS/root/include/bpf" "$DEPS/include/"
	rm -rf "$src" "$DEPS/libbpf-obj" "$DEPS/root"
	touch "$DEPS/.done"
fi

# libpcap static and PIC: its own compiler of tcpdump's filter language (the
# packet capture parts are left out; ecap captures with tcx programs).
if [ ! -f "$DEPS/.pcap-done" ]; then
	say "building libpcap static and PIC in $DEPS (about 30 s)"
	src=$DEPS/pcap-src
	rm -rf "$src"
	fetch_sources "$src" libpcap/bookworm
	(cd "$src"/libpcap-*/ && ./configure -q --disable-shared --without-libnl --disable-usb --disable-netmap \
		--disable-bluetooth --disable-dbus --disable-rdma --disable-remote --without-dpdk CFLAGS="-O2 -fPIC" >/dev/null 2>&1 &&
		make -s libpcap.a >/dev/null 2>&1) || die "libpcap build failed"
	cp "$src"/libpcap-*/libpcap.a "$DEPS/lib/"
	mkdir -p "$DEPS/include/pcap"
	cp "$src"/libpcap-*/pcap/*.h "$DEPS/include/pcap/"
	cp "$src"/libpcap-*/pcap.h "$DEPS/include/"
	rm -rf "$src"
	touch "$DEPS/.pcap-done"
fi

# Other OpenSSL releases for the tests (unpacked, not installed): 1.1.1 from
# bullseye, 3.5 from trixie with the glibc it needs (run through its own ld.so).
RELEASES=$CACHE/openssl-releases-v1
if [ "${1:-}" = "--test" ] && [ ! -f "$RELEASES/.done" ]; then
	say "fetching OpenSSL 1.1.1 and 3.5 from Debian for the tests"
	rm -rf "$RELEASES"
	apt_dir=$RELEASES/apt
	mkdir -p "$apt_dir/sources" "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial"
	uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
	[ -n "$uri" ] || uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}')
	[ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
	apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$apt_dir/sources"
		-o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir/cache" -o APT::Sandbox::User=root)
	fetch() { # suite dest packages...
		local suite=$1 dest=$2
		shift 2
		printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
			"$uri" "$suite" >"$apt_dir/sources/releases.sources"
		rm -rf "$apt_dir/lists" && mkdir -p "$apt_dir/lists/partial"
		apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update for $suite failed"
		mkdir -p "$dest"
		(cd "$apt_dir" && rm -f ./*.deb && apt-get "${apt_opts[@]}" download -qq "$@" >&2 &&
			for d in ./*.deb; do dpkg -x "$d" "$dest"; done) || die "fetching $* from $suite failed"
	}
	fetch bullseye "$RELEASES/1.1.1" libssl1.1
	fetch trixie "$RELEASES/3.5" libssl3t64 libc6
	rm -rf "$apt_dir"
	touch "$RELEASES/.done"
fi

echo "ECAP_DEPS=$DEPS"
echo "DENO=$DENO"
echo "ECAP_OPENSSL_RELEASES=$RELEASES"
