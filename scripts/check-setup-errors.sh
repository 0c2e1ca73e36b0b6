#!/usr/bin/env bash
# Checks that bad set-up states give a clear message (run by .ci/run): no Python, a cache holding
# the wrong torch version, a LIBTORCH without lib/. Each must fail with its own explanation.
set -uo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
expect() { # expect NAME PATTERN -- command...
  local name=$1 pattern=$2; shift 3
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$pattern" <<<"$out"; then
    echo "ok: $name"
  else
    echo "FAILED: $name (rc=$rc): $out"; fail=1
  fi
}
expect "no python" "no Python 3 found" -- env -u LIBTORCH PAINVRL_CACHE="$tmp/a" PYTHON=/nonexistent/python3 scripts/setup-libtorch.sh
mkdir -p "$tmp/b/torch-2.13.0/bin"
printf '#!/bin/sh\necho 2.0.0\n' >"$tmp/b/torch-2.13.0/bin/python"
chmod +x "$tmp/b/torch-2.13.0/bin/python"
touch "$tmp/b/torch-2.13.0/.painvrl-complete"
expect "wrong torch version" "needs exactly 2.13.0" -- env -u LIBTORCH PAINVRL_CACHE="$tmp/b" scripts/setup-libtorch.sh
expect "LIBTORCH without lib/" "has no lib/ directory" -- env LIBTORCH="$tmp/none" scripts/setup-libtorch.sh
exit $fail
