#!/usr/bin/env bash
# Checks the declared minimum supported Rust version (`rust-version` in Cargo.toml).
#
# Only one rustup toolchain is available where CI runs, and no other can be downloaded, so
# the MSRV is checked with what Debian ships: the `rustc-web`/`cargo-web` packages of
# bookworm provide rustc 1.85 (installed here where missing). That rustc is *older* than the
# declared 1.88, so the publishable crates are built with it (`cargo check`, all features,
# and the lean `resilient` without default features) with exactly the features stabilized
# between 1.85 and the declared version that the code uses switched on, each listed below
# with the release that stabilized it. Anything else newer than 1.85 -- a language feature,
# a std API, a dependency that needs a newer compiler -- fails the build. Together with
# clippy's `incompatible_msrv` lint (run by scripts/test.sh, which flags std APIs newer
# than `rust-version`), and the check below that no dependency declares a newer
# `rust-version`, this is as close to a real 1.88 build as this machine allows.
set -euo pipefail
cd "$(dirname "$0")/.."

# Features stabilized after the Debian rustc and no later than the declared MSRV.
allowed_features=(
    let_chains              # stable in 1.88 (edition 2024)
    unsigned_is_multiple_of # stable in 1.87
    slice_as_chunks         # stable in 1.88 (the redis crate, for resilient-redis)
)
# Features of `alloc`, switched on for the project's crates only (a `no_std` dependency
# without `alloc` rejects them as unknown).
allowed_alloc_features=(
    box_uninit_write        # stable in 1.87 (`Box::write`: a tower call's future boxed in place)
)
allowed_features_max="1.88" # the newest release among them

declared=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml)
[[ -n "$declared" ]] || { echo "msrv.sh: no rust-version in the workspace Cargo.toml" >&2; exit 1; }

# version_le A B: A <= B for dotted versions
version_le() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$1" ]]; }
minor() { sed -E 's/^(rustc|cargo) ([0-9]+\.[0-9]+).*/\2/' <<<"$1"; }

# 1. The toolchain the test suite runs on must not be older than what we declare.
current=$(minor "$(rustc --version)")
version_le "$declared" "$current" \
    || { echo "msrv.sh: rustc $current is older than the declared rust-version $declared" >&2; exit 1; }
version_le "$allowed_features_max" "$declared" \
    || { echo "msrv.sh: a feature allowed below is stabilized after $declared" >&2; exit 1; }

# 2. No dependency may require a newer compiler than we declare.
if command -v python3 >/dev/null 2>&1; then
    cargo metadata --format-version 1 --locked --all-features \
        --filter-platform "$(rustc -vV | sed -n 's/^host: //p')" \
    | python3 -c '
import json, sys
declared = tuple(int(x) for x in sys.argv[1].split("."))
meta = json.load(sys.stdin)
pkgs = {p["id"]: p for p in meta["packages"]}
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
members = [i for i in meta["workspace_members"] if pkgs[i].get("publish") != []]
# normal and build dependencies of the published crates: what users compile
seen, todo = set(), list(members)
while todo:
    i = todo.pop()
    if i in seen: continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] in (None, "build") for k in d["dep_kinds"]):
            todo.append(d["pkg"])
bad = []
for i in seen:
    rv = pkgs[i].get("rust_version")
    if rv and tuple(int(x) for x in rv.split(".")[:2]) > declared[:2]:
        bad.append("%s %s needs rustc %s" % (pkgs[i]["name"], pkgs[i]["version"], rv))
if bad:
    sys.exit("msrv.sh: dependencies newer than rust-version " + sys.argv[1] + ":\n  " + "\n  ".join(sorted(bad)))
print("msrv.sh: %d crates in the published dependency tree, none needs more than rustc %s" % (len(seen), sys.argv[1]))
' "$declared"
else
    echo "msrv.sh: python3 not found, dependency rust-version check skipped" >&2
fi

# 3. Build with Debian's rustc 1.85 (installed where missing).
old_rustc=/usr/bin/rustc old_cargo=/usr/bin/cargo
if ! [[ -x $old_rustc && -x $old_cargo ]] || [[ "$(minor "$($old_rustc --version)")" != 1.85 ]]; then
    command -v apt-get >/dev/null 2>&1 \
        || { echo "msrv.sh: needs Debian's rustc-web 1.85 (apt-get not found)" >&2; exit 1; }
    sudo=""; [[ $(id -u) == 0 ]] || sudo=sudo
    $sudo apt-get update -qq
    v=$(apt-cache madison rustc-web | awk '{print $3}' | grep '^1\.85\.' | head -n1)
    [[ -n "$v" ]] || { echo "msrv.sh: no rustc-web 1.85 in the apt sources" >&2; exit 1; }
    # The four packages must have the same version (the newer security update is the default).
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
        "rustc-web=$v" "cargo-web=$v" "libstd-rust-web-dev=$v" "libstd-rust-web-1.85=$v" >/dev/null
fi
old=$(minor "$($old_rustc --version)")
version_le "$old" "$declared" || { echo "msrv.sh: $old_rustc is $old, not older than $declared" >&2; exit 1; }

flags=""
for f in "${allowed_features[@]}"; do flags+=" -Zcrate-attr=feature($f)"; done
own_flags=""
for f in "${allowed_alloc_features[@]}"; do own_flags+=" '-Zcrate-attr=feature($f)'"; done
# A rustc wrapper that adds the `alloc` features to the project's own crates.
wrapper="$(pwd)/target/msrv-rustc-wrapper.sh"
mkdir -p target
cat >"$wrapper" <<WRAPPER
#!/usr/bin/env bash
case " \$* " in
    *" --crate-name resilient"*) exec "\$@"$own_flags ;;
    *) exec "\$@" ;;
esac
WRAPPER
chmod +x "$wrapper"
old_build() {
    # RUSTC_BOOTSTRAP lets this stable rustc accept the feature attributes above.
    env RUSTC="$old_rustc" RUSTC_WRAPPER="$wrapper" RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 \
        RUSTFLAGS="$flags" CARGO_TARGET_DIR=target/msrv \
        "$old_cargo" check --locked --ignore-rust-version "$@"
}
echo "msrv.sh: building with $($old_rustc --version) and${flags}; for the project's crates${own_flags}"
old_build -p resilient-json -p resilient-macros -p resilient -p resilient-cli -p resilient-redis -p resilient-llm --all-features
old_build -p resilient --no-default-features
echo "msrv.sh: rust-version $declared OK"
