#!/usr/bin/env bash
# One command for a fresh Debian 12 machine: installs the build
# dependencies, builds, installs agent-dispatch (default prefix /usr/local)
# and registers it with Claude Code (`agent-dispatch init`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build-release.sh build
sudo=""
[[ $(id -u) -ne 0 ]] && sudo="sudo"
$sudo cmake --install build
echo
exec agent-dispatch init
