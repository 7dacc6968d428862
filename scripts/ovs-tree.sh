#!/bin/bash
# Manages build/ovs, the patched Open vSwitch tree, as a git repository:
# one commit for the pristine 3.1.0 release (tag "base"), then one commit per
# patch of ovs-patch/.
#
#   ovs-tree.sh unpack   unpack the release tarball (checked by sha256)
#   ovs-tree.sh sync     make the tree match ovs-patch/, touching only the
#                        files that differ, so that make rebuilds only those
#   ovs-tree.sh export   write the commits after "base" back to ovs-patch/
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
tree=$top/build/ovs
series_dir=$top/ovs-patch
tarball=${OVS_TARBALL:-/usr/src/openvswitch/openvswitch.tar.gz}
tarball_sha256=82dde6737921b63b284ad8399f95c7f1de94e1b96b2036dcf4a78c9f969ab03f
state=$tree/.git/pairkey-series

die() {
    echo "ovs-tree: $*" >&2
    exit 1
}

git_tree() {
    git -C "$tree" -c user.name=pairkey -c user.email=dev@pairkey.invalid \
        -c advice.detachedHead=false "$@"
}

series() {
    find "$series_dir" -maxdepth 1 -name '*.patch' | LC_ALL=C sort
}

series_hash() {
    series | xargs -r cat | sha256sum | cut -d' ' -f1
}

unpack() {
    [ -f "$tarball" ] || die "$tarball not found (install openvswitch-source)"
    echo "$tarball_sha256  $tarball" | sha256sum --quiet -c - 2>/dev/null \
        || die "$tarball: sha256 differs from $tarball_sha256; refusing to build"

    rm -rf "$tree"
    mkdir -p "$tree"
    tar -xzf "$tarball" -C "$tree" --strip-components=1
    git -C "$tree" init -q
    # Files that the release tarball generates but upstream git does not
    # track; OVS's own consistency checks run on tracked files only.
    cat > "$tree/.git/info/exclude" <<'EOF'
/configure
/config.h.in
/aclocal.m4
Makefile.in
/build-aux/ltmain.sh
/build-aux/config.guess
/build-aux/config.sub
/build-aux/install-sh
/build-aux/missing
/build-aux/compile
/build-aux/depcomp
/m4/libtool.m4
/m4/ltoptions.m4
/m4/ltsugar.m4
/m4/ltversion.m4
/m4/lt~obsolete.m4
tests/*testsuite
/debian/
*.o
*.lo
*.la
*.a
.deps/
.libs/
.dirstamp
EOF
    git_tree add -A
    GIT_AUTHOR_DATE="2023-02-17T00:00:00Z" \
    GIT_COMMITTER_DATE="2023-02-17T00:00:00Z" \
        git_tree commit -q -m "Open vSwitch 3.1.0"
    git_tree tag base
    git_tree checkout -q -b pairkey
    rm -f "$state"
}

sync() {
    [ -d "$tree/.git" ] || die "$tree is not unpacked"
    local hash
    hash=$(series_hash)
    if [ -f "$state" ] && [ "$(head -n1 "$state")" = "$hash" ] \
       && [ "$(sed -n 2p "$state")" = "$(git_tree rev-parse HEAD)" ]; then
        return 0
    fi

    if ! git_tree diff --quiet HEAD; then
        die "build/ovs has uncommitted changes: commit them there and run" \
            "'make ovs-patches', or discard them"
    fi
    if [ -f "$state" ] \
       && [ "$(sed -n 2p "$state")" != "$(git_tree rev-parse HEAD)" ]; then
        die "build/ovs has commits that are not in ovs-patch/: run" \
            "'make ovs-patches' first"
    fi

    # Apply the series in a scratch worktree, then move build/ovs to the
    # result: only files that differ are rewritten.
    local am=$top/build/ovs-am
    rm -rf "$am"
    git_tree worktree prune
    git_tree worktree add -q --detach "$am" base
    local n=0
    while read -r patch; do
        [ -n "$patch" ] || continue
        git -C "$am" -c user.name=pairkey -c user.email=dev@pairkey.invalid \
            am -q --committer-date-is-author-date "$patch" \
            || die "$(basename "$patch") does not apply"
        n=$((n + 1))
    done < <(series)
    local result
    result=$(git -C "$am" rev-parse HEAD)
    git_tree worktree remove --force "$am"
    git_tree checkout -q -B pairkey "$result"
    printf '%s\n%s\n' "$hash" "$result" > "$state"
    echo "ovs-tree: build/ovs has the $n patches of ovs-patch/"
}

export_series() {
    [ -d "$tree/.git" ] || die "$tree is not unpacked"
    git_tree diff --quiet HEAD \
        || die "build/ovs has uncommitted changes: commit them first"
    find "$series_dir" -maxdepth 1 -name '*.patch' -delete
    git_tree format-patch -q --zero-commit --no-signature \
        -o "$series_dir" base..HEAD
    printf '%s\n%s\n' "$(series_hash)" "$(git_tree rev-parse HEAD)" > "$state"
    echo "ovs-tree: wrote $(series | wc -l) patches to ovs-patch/"
}

case ${1:-} in
    unpack) unpack ;;
    sync) sync ;;
    export) export_series ;;
    *) die "usage: $0 unpack|sync|export" ;;
esac
