#!/usr/bin/env bash
# Install the real Claude Code CLI (pinned version) into a private npm prefix
# and print the absolute path of a runnable binary on stdout.
#
#   tests/real/install-claude.sh [PREFIX]
#
# PREFIX defaults to <repo>/tests/.cache/claude (the repo root is derived from
# this script's location). Idempotent: when the pinned version is already
# installed and its binary runs, nothing is downloaded (about 360 MB
# otherwise); the locked npm install is tests/install-npm-pinned.sh.
#
# Environment:
#   CLAUDE_CODE_VERSION  version to install (default 2.1.328)
#   NPM                  npm executable (default: npm)
#
# All progress/diagnostics go to stderr; stdout holds only the binary path.
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.328}"
PKG="@anthropic-ai/claude-code"

die() { echo "install-claude.sh: error: $*" >&2; exit 1; }
log() { echo "install-claude.sh: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
PREFIX="${1:-$REPO_ROOT/tests/.cache/claude}"
mkdir -p -- "$PREFIX" || die "cannot create prefix '$PREFIX'"
PREFIX="$(cd -- "$PREFIX" && pwd -P)"

case "$(uname -m)" in
  x86_64|amd64) ARCH=x64 ;;
  aarch64|arm64) ARCH=arm64 ;;
  *) die "unsupported machine architecture '$(uname -m)'" ;;
esac
OS=linux
[ "$(uname -s)" = Darwin ] && OS=darwin

NM="$PREFIX/node_modules"
NATIVE="$NM/$PKG-$OS-$ARCH/claude"
# Some libc variants ship a -musl package; accept it as a fallback.
NATIVE_MUSL="$NM/$PKG-$OS-$ARCH-musl/claude"
WRAPPER="$NM/.bin/claude"

# Print the first candidate binary whose `--version` reports $VERSION.
find_runnable() {
  local cand out
  for cand in "$NATIVE" "$NATIVE_MUSL" "$WRAPPER"; do
    [ -x "$cand" ] || continue
    out="$(HOME="${TMPDIR:-/tmp}" DISABLE_AUTOUPDATER=1 timeout 60 "$cand" --version 2>/dev/null || true)"
    case "$out" in
      "$VERSION"*) printf '%s\n' "$cand"; return 0 ;;
      *) log "candidate $cand does not run or reports '${out:-nothing}'" ;;
    esac
  done
  return 1
}

# --check: the installed version when a binary of it runs (the check of
# the shared installer, which reinstalls otherwise).
if [ "${2:-}" = --check ]; then
  find_runnable >/dev/null && printf '%s' "$VERSION"
  exit 0
fi

bash "$SCRIPT_DIR/../install-npm-pinned.sh" "$PKG" "$VERSION" "$PREFIX" \
  bash "$SCRIPT_DIR/install-claude.sh" "$PREFIX" --check ||
  exit 1
bin="$(find_runnable)" ||
  die "no runnable claude binary found (looked for $NATIVE, $NATIVE_MUSL, $WRAPPER)"
printf '%s\n' "$bin"
