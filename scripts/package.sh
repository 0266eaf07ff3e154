#!/usr/bin/env bash
# Packages every publishable crate the way `cargo publish` would, without uploading:
# fails when a crate lacks its licence files or README, when a path dependency has no
# version (crates.io would not know which one to use), or when a packaged crate does not
# build from its own contents (e.g. an `include_str!` of a file left outside the crate).
#
# `cargo package --workspace` (cargo >= 1.90) verifies crates that depend on not-yet-published
# workspace crates through a local overlay registry (target/package/tmp-registry), so
# nothing has to be on crates.io; only the crates.io index is read, for the other deps.
set -euo pipefail
cd "$(dirname "$0")/.."

publishable=(resilient-json resilient-macros resilient resilient-cli resilient-redis resilient-llm)
not_published=(resilient-bench resilient-ext-example resilient-ext-app resilient-edition2021)

for c in "${not_published[@]}"; do
    grep -qx 'publish = false' "crates/$c/Cargo.toml" \
        || { echo "package.sh: crates/$c must keep 'publish = false'" >&2; exit 1; }
done

# Every crate directory must be either published or listed as not published.
for dir in crates/*/; do
    c=$(basename "$dir")
    [[ " ${publishable[*]} ${not_published[*]} " == *" $c "* ]] \
        || { echo "package.sh: crates/$c is neither in 'publishable' nor in 'not_published'" >&2; exit 1; }
done

for c in "${publishable[@]}"; do
    list=$(cargo package -p "$c" --list --allow-dirty)
    for f in LICENSE-MIT LICENSE-APACHE README.md Cargo.toml; do
        grep -qx "$f" <<<"$list" || { echo "package.sh: $c would be published without $f" >&2; exit 1; }
    done
done

# Cargo extracts each crate of the overlay registry once, into a directory named after the
# registry's path, and reuses it while it exists: a second run from the same checkout path
# would verify against the *previous* run's copies of our crates (same name and version).
# Drop every extracted copy of our crates that did not come from crates.io.
cargo_home=${CARGO_HOME:-$HOME/.cargo}
for src in "$cargo_home"/registry/src/*/; do
    [[ $(basename "$src") == index.crates.io-* ]] && continue
    for c in "${publishable[@]}"; do
        rm -rf "$src"/"$c"-[0-9]*
    done
done

excludes=()
for c in "${not_published[@]}"; do excludes+=(--exclude "$c"); done
# --allow-dirty: the check is about what is in the tree, committed or not (local runs).
cargo package --workspace "${excludes[@]}" --allow-dirty
