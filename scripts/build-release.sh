#!/usr/bin/env bash
# Configures and builds the product as scripts/install.sh installs it
# (Release, no tests) in BUILD_DIR (default build/). scripts/test.sh builds
# the same configuration in build-test-release/, so that the build the
# README's first command runs is one the suite has built: -O3 sees code
# that -O2 does not (its warnings are errors).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
jobs=${2:-$(nproc)}
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=Release -DAD_TESTS=OFF >/dev/null
cmake --build "$dir" -j"$jobs"
