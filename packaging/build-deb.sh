#!/usr/bin/env bash
# Builds the Debian packages: packaging/build-deb.sh [amd64] [arm64]   (default: both)
#   amd64 → target/debian/oqs-edge_VERSION-1_amd64.deb
#   arm64 → target/debian/oqs-edge_VERSION-1_arm64.deb
# Needs cargo-deb (`cargo install --locked cargo-deb`) and, for arm64, Debian's cross tools
# (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross) and `rustup target add aarch64-unknown-linux-gnu`;
# netns-tests/setup.sh installs all of them.
set -euo pipefail
cd "$(dirname "$0")/.."

arches=("$@")
[ "${#arches[@]}" -gt 0 ] || arches=(amd64 arm64)

# The man pages and completions come from the CLI definition itself (a host build of the same
# source), so they never drift from it; the arm64 package ships the same files.
cargo build --release --locked -p oqs-edge
rm -rf target/cli-docs
target/release/oqs-edge cli-docs target/cli-docs

for arch in "${arches[@]}"; do
    case "$arch" in
    amd64)
        cargo deb --locked -p oqs-edge --no-build
        ;;
    arm64)
        triple=aarch64-unknown-linux-gnu
        export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
        export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
        export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar
        cargo deb --locked -p oqs-edge --target "$triple"
        ;;
    *)
        echo "build-deb.sh: unknown architecture '$arch' (amd64 or arm64)" >&2
        exit 2
        ;;
    esac
done
ls -1 target/debian/*.deb
