# Sourced by the offset scripts: an apt list of its own, built from this
# machine's Debian mirror, so source (and binary) packages of other suites
# can be fetched without touching the system's apt configuration.
#   private_apt DIR TYPES SUITE...   e.g. private_apt "$tmp/apt" "deb-src" bookworm trixie
# Sets apt_opts (pass them to apt-get and apt-cache) and runs apt-get update.
# Needs the caller's say() and die(). APT_ARCH, if set, limits binary lists.

private_apt() {
	local dir=$1 types=$2 uri
	shift 2
	mkdir -p "$dir/sources" "$dir/lists/partial" "$dir/cache/archives/partial"
	uri=$(grep -hE '^URIs:.*/debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}' || true)
	[ -n "$uri" ] || uri=$(grep -hE '^deb .*/debian/? ' /etc/apt/sources.list 2>/dev/null | head -1 | awk '{print $2}' || true)
	[ -n "$uri" ] || die "cannot find this machine's Debian mirror in /etc/apt"
	{
		echo "Types: $types"
		echo "URIs: $uri"
		echo "Suites: $*"
		echo "Components: main"
		[ -z "${APT_ARCH:-}" ] || echo "Architectures: $APT_ARCH"
		echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
	} >"$dir/sources/private.sources"
	apt_opts=(-o Dir::Etc::SourceList=/dev/null -o "Dir::Etc::SourceParts=$dir/sources"
		-o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
		-o "Dir::State::Status=/dev/null" -o APT::Sandbox::User=root)
	say "apt-get update ($types $*)"
	apt-get "${apt_opts[@]}" update -qq >&2 || die "apt-get update of the private list failed"
}
