#!/usr/bin/env bash
# Install the official TypeScript MCP SDK (pinned version) into a private
# npm prefix and print the prefix's node_modules directory on stdout.
#
#   tests/sdk/install-mcp-sdk.sh [PREFIX]
#
# PREFIX defaults to <repo>/tests/.cache/mcp-sdk. Idempotent: when the pinned
# version is already installed and loads, nothing is downloaded.
#
# Environment:
#   MCP_SDK_VERSION  version to install (default 1.32.2)
#   NPM              npm executable (default: npm)
#
# Progress and diagnostics go to stderr; stdout holds only the path.
set -euo pipefail

VERSION="${MCP_SDK_VERSION:-1.32.2}"
NPM="${NPM:-npm}"
PKG="@modelcontextprotocol/sdk"

die() { echo "install-mcp-sdk.sh: error: $*" >&2; exit 1; }
log() { echo "install-mcp-sdk.sh: $*" >&2; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
PREFIX="${1:-$REPO_ROOT/tests/.cache/mcp-sdk}"
mkdir -p -- "$PREFIX" || die "cannot create prefix '$PREFIX'"
PREFIX="$(cd -- "$PREFIX" && pwd -P)"
NM="$PREFIX/node_modules"

# The installed version, if the package's client entry points load.
loads() {
  node -e '
    const { createRequire } = require("node:module");
    const r = createRequire(process.argv[1] + "/");
    r("@modelcontextprotocol/sdk/client/index.js");
    r("@modelcontextprotocol/sdk/client/stdio.js");
    process.stdout.write(require(process.argv[1] + "/@modelcontextprotocol/sdk/package.json").version);
  ' "$NM" 2>/dev/null
}

# Serialize concurrent installers (parallel test runs) on the same prefix.
if command -v flock >/dev/null 2>&1; then
  exec 9>"$PREFIX/.install.lock"
  flock 9 || die "cannot lock $PREFIX/.install.lock"
fi

if [ "$(loads || true)" = "$VERSION" ]; then
  printf '%s\n' "$NM"
  exit 0
fi

command -v "$NPM" >/dev/null 2>&1 || die "npm not found (set NPM=...)"
log "installing $PKG@$VERSION into $PREFIX ..."
# A package.json in the prefix keeps npm from walking up to the repo root.
[ -f "$PREFIX/package.json" ] || printf '{"name":"mcp-sdk-cache","private":true}\n' >"$PREFIX/package.json"
if ! "$NPM" install --prefix "$PREFIX" --no-audit --no-fund --no-save \
      --loglevel=error "$PKG@$VERSION" >&2; then
  die "npm install $PKG@$VERSION failed (is the npm registry reachable?)"
fi
got="$(loads || true)"
[ "$got" = "$VERSION" ] || die "after install, $PKG reports version '${got:-none (does not load)}', expected $VERSION"
log "installed $PKG $VERSION in $NM"
printf '%s\n' "$NM"
