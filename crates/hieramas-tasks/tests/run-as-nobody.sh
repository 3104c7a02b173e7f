#!/usr/bin/env bash
# Runs hieramas-tasks test executables as an unprivileged user: as root, drops to nobody
# (uid/gid 65534, no groups, no capabilities) with setpriv; otherwise runs them as the current
# user. CI builds the executables first, e.g.
#   cargo test -p hieramas-tasks --test sandbox --test humaneval --no-run   (prints their paths)
# then calls: HIERAMAS_DATA_DIR=... crates/hieramas-tasks/tests/run-as-nobody.sh <test-exe>...
# The executables are copied into a fresh directory, with a fresh HOME and HIERAMAS_HOME there
# (the expected-output cache of $HIERAMAS_HOME is copied in when present, with its sha256
# index, and checked as always) and a copy of the HumanEval+ data. Exits non-zero if any fails.
set -euo pipefail

if [ $# -lt 1 ]; then
    echo "usage: $0 <test-executable>... [-- <test args>]" >&2
    exit 2
fi
exes=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do exes+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
data_src="${HIERAMAS_DATA_DIR:?set HIERAMAS_DATA_DIR to the datasets folder}"

work="$(mktemp -d /tmp/hieramas-nobody.XXXXXX)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/bin" "$work/home" "$work/data"
# The data is copied too: the checkout's parents (a clone under /root, say) may not be
# traversable by nobody.
cp -r "$data_src/humaneval_plus" "$work/data/"
chmod -R a+rX "$work/data"
data="$work/data"
for exe in "${exes[@]}"; do
    install -m 0755 "$exe" "$work/bin/"
done
if [ -n "${HIERAMAS_HOME:-}" ] && [ -d "$HIERAMAS_HOME/humaneval-plus" ]; then
    cp -r "$HIERAMAS_HOME/humaneval-plus" "$work/home/"
    cp "$HIERAMAS_HOME/humaneval-plus.index.json" "$work/home/" 2>/dev/null || true
fi
chmod 0755 "$work" "$work/bin"

if [ "$(id -u)" = 0 ]; then
    chown -R 65534:65534 "$work/home"
    as=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --)
else
    as=()
fi
cd "$work"
status=0
for exe in "${exes[@]}"; do
    name="$(basename "$exe")"
    who="$("${as[@]}" id -un 2>/dev/null || true) (uid $("${as[@]}" id -u))"
    echo "== $name as $who"
    if ! "${as[@]}" env -i PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 \
        HOME="$work/home" HIERAMAS_HOME="$work/home" HIERAMAS_DATA_DIR="$data" \
        ${CI:+CI="$CI"} RUST_BACKTRACE=1 "$work/bin/$name" "$@"; then
        echo "== $name FAILED as $who" >&2
        status=1
    fi
done
exit "$status"
