#!/usr/bin/env bash
# Install the official TypeScript MCP SDK (pinned version) into a private
# npm prefix and print the prefix's node_modules directory on stdout.
#
#   tests/e2e/install-mcp-sdk.sh [PREFIX]
#
# PREFIX defaults to <repo>/tests/.cache/mcp-sdk. Idempotent: when the pinned
# version is already installed and loads, nothing is downloaded (the locked
# npm install is tests/install-npm-pinned.sh).
#
# Environment:
#   MCP_SDK_VERSION  version to install (default 1.32.2)
#   NPM              npm executable (default: npm)
#
# Progress and diagnostics go to stderr; stdout holds only the path.
set -euo pipefail

VERSION="${MCP_SDK_VERSION:-1.32.2}"
PKG="@modelcontextprotocol/sdk"

die() { echo "install-mcp-sdk.sh: error: $*" >&2; exit 1; }

SCRIPT_DIR="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)"
REPO_ROOT="$(cd -- "$SCRIPT_DIR/../.." && pwd -P)"
PREFIX="${1:-$REPO_ROOT/tests/.cache/mcp-sdk}"
mkdir -p -- "$PREFIX" || die "cannot create prefix '$PREFIX'"
PREFIX="$(cd -- "$PREFIX" && pwd -P)"
NM="$PREFIX/node_modules"

# The installed version, if the package's client entry points load (node
# gets the prefix's node_modules as its argument).
loads='
  const { createRequire } = require("node:module");
  const r = createRequire(process.argv[1] + "/");
  r("@modelcontextprotocol/sdk/client/index.js");
  r("@modelcontextprotocol/sdk/client/stdio.js");
  process.stdout.write(require(process.argv[1] + "/@modelcontextprotocol/sdk/package.json").version);
'
bash "$SCRIPT_DIR/../install-npm-pinned.sh" "$PKG" "$VERSION" "$PREFIX" node -e "$loads" ||
  exit 1
printf '%s\n' "$NM"
