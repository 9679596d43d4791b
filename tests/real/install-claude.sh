#!/usr/bin/env bash
# Install the real Claude Code CLI (pinned version) into a private npm prefix
# and print the absolute path of a runnable binary on stdout.
#
#   tests/real/install-claude.sh [PREFIX]
#
# PREFIX defaults to <repo>/tests/.cache/claude (the repo root is derived from
# this script's location). Idempotent: when the pinned version is already
# installed and its binary runs, nothing is downloaded.
#
# Environment:
#   CLAUDE_CODE_VERSION  version to install (default 2.1.328)
#   NPM                  npm executable (default: npm)
#
# All progress/diagnostics go to stderr; stdout holds only the binary path.
set -euo pipefail

VERSION="${CLAUDE_CODE_VERSION:-2.1.328}"
NPM="${NPM:-npm}"
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

pkg_version() { # $1 = package.json path
  [ -f "$1" ] || return 1
  node -e 'process.stdout.write(String(require(process.argv[1]).version||""))' "$1" 2>/dev/null
}

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

# Serialize concurrent installers (parallel test runs) on the same prefix.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$PREFIX/.install.lock"
  flock 9 || die "cannot lock $PREFIX/.install.lock"
fi

installed="$(pkg_version "$NM/$PKG/package.json" || true)"
if [ "$installed" = "$VERSION" ]; then
  if bin="$(find_runnable)"; then
    [ -n "${INSTALL_CLAUDE_VERBOSE:-}" ] && log "claude-code $VERSION already installed in $PREFIX"
    printf '%s\n' "$bin"
    exit 0
  fi
  log "claude-code $VERSION present but no runnable binary; reinstalling"
fi

command -v "$NPM" >/dev/null 2>&1 || die "npm not found (set NPM=...)"
log "installing $PKG@$VERSION into $PREFIX (about 360 MB) ..."
# A package.json in the prefix keeps npm from walking up to the repo root.
[ -f "$PREFIX/package.json" ] || printf '{"name":"claude-cli-cache","private":true}\n' >"$PREFIX/package.json"
if ! "$NPM" install --prefix "$PREFIX" --no-audit --no-fund --no-save \
      --loglevel=error "$PKG@$VERSION" >&2; then
  die "npm install $PKG@$VERSION failed (is the npm registry reachable?)"
fi

installed="$(pkg_version "$NM/$PKG/package.json" || true)"
[ "$installed" = "$VERSION" ] || die "after install, $PKG reports version '${installed:-none}', expected $VERSION"

if bin="$(find_runnable)"; then
  log "installed claude-code $VERSION: $bin"
  printf '%s\n' "$bin"
  exit 0
fi
die "no runnable claude binary found (looked for $NATIVE, $NATIVE_MUSL, $WRAPPER)"
