#!/usr/bin/env bash
# lint.sh - house rules that a grep can check (TAP). Run from meson with the
# source root as $1.
cd "${1:-.}" || exit 1
n=0
fail=0
check() { # check NAME OUTPUT-OF-OFFENDERS
	n=$((n + 1))
	if [ -z "$2" ]; then
		echo "ok $n $1"
	else
		echo "not ok $n $1"
		printf '%s\n' "$2" | sed 's/^/# /'
		fail=1
	fi
}
src() { find "$@" -name '*.[ch]' 2>/dev/null; }

check fuse_headers_are_included_only_by_the_frontend \
	"$(src fs keyring include tools | grep -v '^fs/frontend/' | xargs grep -ln '#include <fuse' 2>/dev/null)"
for leaf in format store audit policy; do
	check "the_${leaf}_leaf_includes_no_other_layer" \
		"$(src fs/$leaf | xargs grep -n '#include "strongroom/' 2>/dev/null |
			grep -v "strongroom/\(${leaf}\|${leaf}_[a-z]*\)\.h\"")"
done
check the_keyring_includes_no_other_layer \
	"$(src keyring | xargs grep -n '#include "strongroom/' | grep -v 'strongroom/keyring\.h"')"
check no_unbounded_string_functions \
	"$(src fs keyring tools | xargs grep -nE '\b(sprintf|vsprintf|strcpy|strcat|gets)\(' 2>/dev/null)"
check only_the_store_layer_makes_syscalls_on_the_tree \
	"$(src fs/vault fs/format | xargs grep -nE '(^|[^_a-z])(open|openat|pread|pwrite|renameat2?|unlinkat|mkdirat|linkat|ftruncate|fsync|fdatasync)\([^0-9]' 2>/dev/null | grep -v 'lint: not the store')"
check store_opens_refuse_symlinks \
	"$(grep -n '[^_]openat(' fs/store/*.c | grep -v 'O_NOFOLLOW')"
check secrets_are_wiped_not_memset \
	"$(src keyring | xargs grep -nE 'memset\([^,]*(key|pass|secret|seed)' 2>/dev/null)"
echo "1..$n"
exit $fail
