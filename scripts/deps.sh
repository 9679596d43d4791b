#!/usr/bin/env bash
# Installs the Debian packages agent-dispatch needs: build (default) or
# build + test (--test). Uses sudo when not root; skips what is installed.
set -euo pipefail
pkgs=(build-essential cmake pkg-config liblua5.4-dev lua-cjson-dev libyaml-dev uuid-dev libuv1-dev libssl-dev)
if [[ "${1:-}" == "--test" ]]; then
  pkgs+=(valgrind zsh fish dpkg-dev man-db clang libclang-rt-14-dev libxml2-utils openssh-server)
  command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
  command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "Installing: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
