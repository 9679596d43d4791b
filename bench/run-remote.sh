#!/usr/bin/env bash
# Remote agents over ssh against local ones, in one run (bench/remote.js).
# Needs root (it creates an unprivileged user and starts a private sshd on
# 127.0.0.1, as tests/e2e/remote.test.js does) and openssh-server.
#   bench/run-remote.sh              full run, writes bench/results-remote.md
#   BENCH_QUICK=1 bench/run-remote.sh   smoke run, prints the table only
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$here/build.sh"
exec node "$here/remote.js" 2> >(grep -v ' INFO ' >&2)
