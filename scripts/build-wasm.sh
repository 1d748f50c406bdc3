#!/usr/bin/env bash
# Build dist/tollgate.wasm (wasm32-wasip1, release), the module Envoy and Kong load.
#
# Route 1: rustup's wasm32-wasip1 target (what most developers have).
# Route 2: Debian's own toolchain (rustc-web, lld-19, wasi-libc), for machines where rustup
#          cannot fetch the target (CI here reaches package registries, not static.rust-lang.org).
# TOLLGATE_WASM_TOOLCHAIN=rustup|debian forces a route; the default, auto, tries them in order.
#
# `build-wasm.sh --example NAME` builds examples/NAME.rs as a wasm32-wasip1 command module
# instead (the benchmarks run the filter's pure code that way) and leaves dist/ alone.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=wasm32-wasip1
TARGET_DIR=${CARGO_TARGET_DIR:-target}
# SIMD: memchr and friends run ~8x faster in wasm with it; V8 and Wasmtime both support it.
SIMD="-C target-feature=+simd128"
DEBIAN_PKGS=(rustc-web cargo-web rust-web-src lld-19 wasi-libc)
WHAT=(--lib)
ARTIFACT=tollgate.wasm
if [[ ${1:-} == --example ]]; then
  [[ -n ${2:-} ]] || { echo "build-wasm: --example needs a name" >&2; exit 2; }
  WHAT=(--example "$2")
  ARTIFACT=examples/$2.wasm
fi

die() { echo "build-wasm: $*" >&2; exit 1; }

rustup_ready() {
  command -v rustup >/dev/null || return 1
  local installed
  # Captured rather than piped into grep -q, which under pipefail can fail on SIGPIPE.
  installed=$(timeout 60 rustup target list --installed 2>/dev/null) || return 1
  grep -qx "$TARGET" <<<"$installed" && return 0
  # Downloading the target sometimes hangs here: bound it so the fallback still gets its turn.
  echo "build-wasm: trying 'rustup target add $TARGET' (60 s at most)" >&2
  timeout 60 rustup target add "$TARGET" >&2
}

debian_ready() {
  local p missing=()
  for p in "${DEBIAN_PKGS[@]}"; do
    [[ $(dpkg-query -W -f='${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || return 1
  local sudo=()
  [[ $(id -u) == 0 ]] || sudo=(sudo)
  echo "build-wasm: installing ${missing[*]} with apt-get" >&2
  "${sudo[@]}" apt-get update >&2 &&
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2
}

build_rustup() {
  RUSTFLAGS="$SIMD" cargo build --release "${WHAT[@]}" --target "$TARGET"
  OUT=$TARGET_DIR/$TARGET/release/$ARTIFACT
  VIA="the rustup toolchain"
}

build_debian() {
  # rustup's proxies come first in PATH and obey RUSTUP_TOOLCHAIN: name Debian's binaries outright.
  # Debian ships no prebuilt std for wasm, so build it from rust-web-src (-Zbuild-std, which needs
  # RUSTC_BOOTSTRAP) and link against Debian's wasi-libc with lld instead of rustup's bundled crt.
  # A separate target dir keeps the two toolchains from invalidating each other's artifacts.
  local dir=$TARGET_DIR/debian-toolchain
  env -u RUSTUP_TOOLCHAIN -u CARGO_ENCODED_RUSTFLAGS \
    RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR="$dir" \
    CARGO_TARGET_WASM32_WASIP1_LINKER=wasm-ld-19 \
    RUSTFLAGS="-C link-self-contained=no -L /usr/lib/wasm32-wasi $SIMD" \
    /usr/bin/cargo build --release "${WHAT[@]}" --target "$TARGET" -Zbuild-std=std,panic_abort
  OUT=$dir/$TARGET/release/$ARTIFACT
  VIA="Debian's toolchain"
}

case ${TOLLGATE_WASM_TOOLCHAIN:-auto} in
  rustup) rustup_ready || die "rustup has no $TARGET target and could not add it"; build_rustup ;;
  debian) debian_ready || die "could not install Debian packages: ${DEBIAN_PKGS[*]}"; build_debian ;;
  auto)
    # Only a missing toolchain falls back: a compile error on rustup would fail on Debian too.
    if rustup_ready; then
      build_rustup
    elif debian_ready; then
      echo "build-wasm: no rustup $TARGET target, using Debian's toolchain" >&2
      build_debian
    else
      die "no toolchain for $TARGET: install rustup's target (rustup target add $TARGET)" \
        "or the Debian packages ${DEBIAN_PKGS[*]}"
    fi ;;
  *) die "TOLLGATE_WASM_TOOLCHAIN must be rustup, debian or auto, not '$TOLLGATE_WASM_TOOLCHAIN'" ;;
esac

[[ -f $OUT ]] || die "cargo succeeded but $OUT is missing"
if [[ $ARTIFACT != tollgate.wasm ]]; then
  echo "$OUT"
  exit 0
fi
mkdir -p dist
# Copy only on change so dist/tollgate.wasm keeps its mtime across no-op builds.
cmp -s "$OUT" dist/tollgate.wasm || cp "$OUT" dist/tollgate.wasm
echo "built dist/tollgate.wasm ($(stat -c %s dist/tollgate.wasm) bytes) with $VIA"
