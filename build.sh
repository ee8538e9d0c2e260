#!/usr/bin/env bash
# build.sh: build, install and test kubectl-kodama (placeholder; the foundation issue completes it).
set -euo pipefail
cd "$(dirname "$0")"
case "${1:-release}" in
  test) exec cargo test --workspace ;;
  *) exec cargo build --release ;;
esac
