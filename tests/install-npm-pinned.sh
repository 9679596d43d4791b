#!/usr/bin/env bash
# Install one npm package at a pinned version into a private npm prefix.
#
#   tests/install-npm-pinned.sh NAME VERSION PREFIX [CHECK...]
#
# CHECK is a command that prints the version installed in PREFIX and usable
# (it gets PREFIX/node_modules as its last argument); without one, the
# version in NAME's package.json. Idempotent: when CHECK prints VERSION,
# nothing is downloaded. Installers of the same prefix (test runs at once)
# take turns under a lock in it. Fails unless CHECK prints VERSION after
# the install.
#
# Environment: NPM, the npm executable (default: npm).
# Progress and diagnostics go to stderr; stdout stays empty.
set -euo pipefail

NAME=$1 VERSION=$2 PREFIX=$3
shift 3
NPM="${NPM:-npm}"
me="install $NAME@$VERSION"
die() { echo "$me: error: $*" >&2; exit 1; }

mkdir -p -- "$PREFIX" || die "cannot create prefix '$PREFIX'"
PREFIX="$(cd -- "$PREFIX" && pwd -P)"
NM="$PREFIX/node_modules"

installed() {
  if (($#)); then
    "$@" "$NM" 2>/dev/null || true
  else
    node -e 'process.stdout.write(String(require(process.argv[1]).version || ""))' \
      "$NM/$NAME/package.json" 2>/dev/null || true
  fi
}

if command -v flock >/dev/null 2>&1; then
  exec 9>"$PREFIX/.install.lock"
  flock 9 || die "cannot lock $PREFIX/.install.lock"
fi

[ "$(installed "$@")" = "$VERSION" ] && exit 0

command -v "$NPM" >/dev/null 2>&1 || die "npm not found (set NPM=...)"
echo "$me: installing into $PREFIX ..." >&2
# A package.json in the prefix keeps npm from walking up to the repo root.
[ -f "$PREFIX/package.json" ] || printf '{"name":"npm-pinned-cache","private":true}\n' >"$PREFIX/package.json"
if ! "$NPM" install --prefix "$PREFIX" --no-audit --no-fund --no-save \
      --loglevel=error "$NAME@$VERSION" >&2; then
  die "npm install failed (is the npm registry reachable?)"
fi
got="$(installed "$@")"
[ "$got" = "$VERSION" ] || die "after the install, $NAME reports version '${got:-none (does not load or run)}'"
echo "$me: installed in $NM" >&2
