#!/usr/bin/env bash
# build.sh: build, install, test and check kubectl-kodama. Run `./build.sh help` for the subcommands.
set -euo pipefail
cd "$(dirname "$0")"

BIN=kubectl-kodama
TARGET=x86_64-unknown-linux-musl

usage() {
  cat <<'USAGE'
Usage: ./build.sh [COMMAND]

  release   (default) Build the static x86_64-unknown-linux-musl binary (falls back to a glibc
            build with a warning when musl cannot be had) and print its path and size
  install   Build, then copy kubectl-kodama to $PREFIX/bin (default: ~/.local/bin)
  test      Run the whole test suite: cargo test --workspace (extra arguments go to cargo test)
  lint      rustfmt --check and clippy -D warnings on all targets
  check     lint, then test (what CI runs)
  bench     Benchmarks (not yet implemented)
  demo      A scripted demo against the simulated cluster (not yet implemented)
  e2e       End-to-end tests against a real cluster (not yet implemented)
  help      This text
USAGE
}

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'WARNING: %s\n' "$*" >&2; }

musl_target_installed() {
  local sysroot
  sysroot=$(rustc --print sysroot 2>/dev/null) || return 1
  [ -d "$sysroot/lib/rustlib/$TARGET/lib" ]
}

# Sets BUILT to the path of the release binary.
build_release() {
  BUILT=""
  if [ "$(uname -s)" = Linux ] && [ "$(uname -m)" = x86_64 ]; then
    if ! musl_target_installed && command -v rustup >/dev/null 2>&1; then
      say "adding the Rust target $TARGET"
      rustup target add "$TARGET" || warn "rustup could not add $TARGET"
    fi
    if musl_target_installed; then
      # ring compiles C code; without a musl cross compiler, the host gcc does the job.
      if ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1; then
        export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-gcc}"
      fi
      say "building the static binary (cargo build --release --target $TARGET)"
      if cargo build --release --target "$TARGET" --bin "$BIN"; then
        BUILT="target/$TARGET/release/$BIN"
      else
        warn "the musl build failed (see above)"
      fi
    else
      warn "the Rust target $TARGET is not installed and rustup is not available to add it"
    fi
  else
    warn "static musl builds are set up for x86_64 Linux only; this is $(uname -s)/$(uname -m)"
  fi
  if [ -z "$BUILT" ]; then
    warn "falling back to a glibc build: the binary is dynamically linked and cannot be copied into session pods as the sync receiver"
    cargo build --release --bin "$BIN"
    BUILT="target/release/$BIN"
  fi
  local size
  size=$(wc -c <"$BUILT" | tr -d ' ')
  say "built $BUILT ($size bytes, $(awk -v s="$size" 'BEGIN { printf "%.1f MiB", s / 1048576 }'))"
}

cmd_release() {
  build_release
  echo "$BUILT"
}

cmd_install() {
  build_release
  local dest
  if [ -n "${PREFIX:-}" ]; then
    dest="$PREFIX/bin"
  elif [ -n "${HOME:-}" ]; then
    dest="$HOME/.local/bin"
  else
    echo "error: HOME is not set; set PREFIX to choose where to install (e.g. PREFIX=/usr/local ./build.sh install)" >&2
    exit 1
  fi
  mkdir -p "$dest"
  install -m 0755 "$BUILT" "$dest/$BIN"
  say "installed $dest/$BIN"
  case ":$PATH:" in
    *":$dest:"*)
      say "$dest is on your PATH"
      if command -v kubectl >/dev/null 2>&1; then
        if kubectl plugin list 2>/dev/null | grep -q "/$BIN\$"; then
          say "kubectl finds the plugin: try 'kubectl kodama version'"
        else
          warn "kubectl plugin list does not show $BIN; another $BIN earlier on PATH may shadow it"
        fi
      else
        say "kubectl is not installed; '$BIN version' works on its own"
      fi
      ;;
    *)
      warn "$dest is not on your PATH, so kubectl will not find the plugin. Add it with:"
      echo "    echo 'export PATH=\"$dest:\$PATH\"' >> ~/.bashrc && export PATH=\"$dest:\$PATH\"" >&2
      ;;
  esac
}

cmd_test() {
  say "cargo test --workspace"
  # Tests must not read the developer's own kodama configuration.
  env -u KODAMA_CONFIG_DIR RUST_BACKTRACE=1 cargo test --workspace --no-fail-fast "$@"
}

cmd_lint() {
  say "rustfmt --check"
  cargo fmt --all -- --check
  say "clippy -D warnings (all targets)"
  cargo clippy --workspace --all-targets -- -D warnings
}

not_yet() {
  echo "./build.sh $1: not yet implemented" >&2
  exit 1
}

case "${1:-release}" in
  release) cmd_release ;;
  install) cmd_install ;;
  test) shift; cmd_test "$@" ;;
  lint) cmd_lint ;;
  check) cmd_lint; cmd_test ;;
  bench) not_yet bench ;;
  demo) not_yet demo ;;
  e2e) not_yet e2e ;;
  help | -h | --help) usage ;;
  *) echo "unknown command: $1" >&2; usage >&2; exit 2 ;;
esac
