# tools/deps.sh - sourced by tools/check, tools/quickstart and tools/bench:
# install from Debian's archive whatever the project needs and is missing.
# deps_install build|test|bench

deps_build=(gcc pkg-config meson ninja-build libfuse3-dev fuse3 libsodium-dev libacl1-dev
	libzstd-dev zstd acl attr)
deps_test=(clang libclang-rt-14-dev clang-tidy cppcheck valgrind gocryptfs python3 python3-pytest rsync sqlite3 git xxd util-linux
	libreoffice-writer-nogui libreoffice-calc-nogui poppler-utils unzip samba smbclient restic tar)
deps_bench=(gocryptfs bindfs fio time)

deps_install() {
	local want=("${deps_build[@]}") missing=() p
	case "${1:-build}" in
	test) want+=("${deps_test[@]}") ;;
	bench) want+=("${deps_test[@]}" "${deps_bench[@]}") ;;
	esac
	for p in "${want[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
			missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "Installing: ${missing[*]}"
	local sudo=
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	$sudo apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; return 1; }
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null || { echo "apt-get install failed: ${missing[*]}" >&2; return 1; }
}
