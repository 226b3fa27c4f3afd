#!/usr/bin/env bash
# Build static release binaries of letterbox for ARM boards and x86_64 NAS boxes.
#
#   cross/build.sh [CARGO_FLAG...] [TARGET...]
#
# TARGET defaults to all supported targets, each a static binary:
#   aarch64-unknown-linux-musl      Pi 3/4/5 (and Zero 2 W) on a 64-bit OS, arm64 NAS
#   x86_64-unknown-linux-musl       Intel and AMD NAS boxes and PCs
#   armv7-unknown-linux-gnueabihf   Pi 2/3 (and Zero 2 W) on a 32-bit OS; glibc
#                                   linked in statically, so any glibc version
# Arguments that start with "-" are passed to cargo (e.g. --locked, -j1).
# Cargo's own variables work too (CARGO_TARGET_DIR, CARGO_BUILD_JOBS=1 on a
# shared machine).
#
# For each target it prints the path of cargo's binary, and of a stripped copy
# at TARGET_DIR/cross/letterbox-TARGET, which is the file to copy to a board.
# Linkers, C compilers and qemu runners come from .cargo/config.toml.
# A binary that `file` does not call static is an error.
set -euo pipefail

cd "$(dirname "$0")/.."

all_targets=(aarch64-unknown-linux-musl x86_64-unknown-linux-musl armv7-unknown-linux-gnueabihf)
cargo_flags=()
targets=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) cargo_flags+=("$arg") ;;
        *) targets+=("$arg") ;;
    esac
done
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

die() { echo "cross/build.sh: error: $*" >&2; exit 1; }

# Debian cross toolchain prefix for each target (gcc = linker and C compiler
# for ring, strip = size reduction).
tool_prefix() {
    case "$1" in
        aarch64-unknown-linux-musl|aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        x86_64-unknown-linux-musl) echo x86_64-linux-gnu ;;
        *) return 1 ;;
    esac
}

installed_targets=$(rustup target list --installed 2>/dev/null || true)

# Check everything up front so a missing package fails in a second, not after
# a five-minute build of the first target.
for t in "${targets[@]}"; do
    prefix=$(tool_prefix "$t") || die "unsupported target '$t' (supported: ${all_targets[*]})"
    command -v "$prefix-gcc" >/dev/null ||
        case "$prefix" in
            x86_64-linux-gnu) die "$prefix-gcc not found; install it: apt-get install gcc" ;;
            arm-linux-gnueabihf) die "$prefix-gcc not found; install it: apt-get install gcc-$prefix libc6-dev-armhf-cross" ;;
            *) die "$prefix-gcc not found; install it: apt-get install gcc-$prefix libc6-dev-arm64-cross" ;;
        esac
    if [ -n "$installed_targets" ] && ! grep -qx "$t" <<<"$installed_targets"; then
        die "Rust target $t is not installed; run: rustup target add $t"
    fi
done

target_dir=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "could not find cargo's target directory"

summary=()
for t in "${targets[@]}"; do
    prefix=$(tool_prefix "$t")
    echo "==> cargo build --release --target $t ${cargo_flags[*]:-}"
    cargo build --release --target "$t" ${cargo_flags[@]+"${cargo_flags[@]}"}

    bin="$target_dir/$t/release/letterbox"
    [ -x "$bin" ] || die "cargo finished but $bin is missing"
    mkdir -p "$target_dir/cross"
    out="$target_dir/cross/letterbox-$t"
    # Strip a copy, not cargo's file: cargo's stays useful for debugging
    # (symbolised backtraces) and is not rewritten behind cargo's back.
    "$prefix-strip" -o "$out" "$bin"

    command -v file >/dev/null || die "'file' is needed to check the binary is static (apt-get install file)"
    desc=$(file -L "$out")
    grep -Eq 'statically linked|static-pie linked' <<<"$desc" ||
        die "$out is not static: $desc"
    kind=static
    summary+=("$(printf '%-31s cargo %9s bytes  stripped %9s bytes  %-7s %s' \
        "$t" "$(stat -c %s "$bin")" "$(stat -c %s "$out")" "$kind" "$out")")
done

echo
echo "==> built"
printf '%s\n' "${summary[@]}"
