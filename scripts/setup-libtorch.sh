#!/usr/bin/env bash
# Installs libtorch for tch 0.26 (PyPI torch==2.13.0) into a per-user cache and links it into this
# checkout as `.libtorch`, which `.cargo/config.toml` points LIBTORCH at. Idempotent: a second run
# only checks the cache. Skip it entirely when you bring your own libtorch: export LIBTORCH=/path
# (a libtorch or a `torch` package directory, CUDA builds included) before running cargo.
#
# Environment:
#   PAINVRL_CACHE   cache root (default: ${XDG_CACHE_HOME:-$HOME/.cache}/painvrl)
#   PYTHON          python 3 interpreter used to create the venv (default: python3)
set -euo pipefail

TORCH_VERSION=2.13.0
MIN_FREE_GB=8
repo_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${PAINVRL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/painvrl}
venv="$cache_root/torch-$TORCH_VERSION"
link="$repo_root/.libtorch"
python=${PYTHON:-python3}

die() { echo "setup-libtorch: error: $*" >&2; exit 1; }
note() { [ -n "${PAINVRL_SETUP_QUIET:-}" ] || echo "setup-libtorch: $*" >&2; }

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] || die "LIBTORCH=$LIBTORCH has no lib/ directory; point it at a libtorch or torch package directory"
  note "LIBTORCH is set ($LIBTORCH); nothing to install"
  exit 0
fi

torch_dir_of() { # prints the torch package dir of a venv, or nothing
  "$1/bin/python" - <<'PY' 2>/dev/null || true
import importlib.util, pathlib
spec = importlib.util.find_spec("torch")
if spec and spec.origin:
    print(pathlib.Path(spec.origin).parent)
PY
}
installed_version() {
  "$1/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))' 2>/dev/null || true
}

if [ -x "$venv/bin/python" ] && [ -f "$venv/.painvrl-complete" ]; then
  have=$(installed_version "$venv")
  if [ "${have%%+*}" != "$TORCH_VERSION" ]; then
    die "the cache $venv holds torch '${have:-none}', but tch 0.26 needs exactly $TORCH_VERSION; remove $venv and run this script again"
  fi
else
  command -v "$python" >/dev/null 2>&1 || die "no Python 3 found ('$python'); install Python 3.9+ with venv and pip, or set PYTHON=/path/to/python3"
  "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null \
    || die "'$python' is not Python >= 3.9; set PYTHON=/path/to/python3"
  mkdir -p "$cache_root"
  free_kb=$(df -Pk "$cache_root" | awk 'NR==2 {print $4}')
  if [ -n "$free_kb" ] && [ "$free_kb" -lt $((MIN_FREE_GB * 1024 * 1024)) ]; then
    die "only $((free_kb / 1024 / 1024)) GB free under $cache_root; torch $TORCH_VERSION needs about 5 GB (set PAINVRL_CACHE to a larger disk)"
  fi
  note "installing torch==$TORCH_VERSION into $venv (about 4.7 GB, a few minutes, once)"
  rm -rf "$venv"
  "$python" -m venv "$venv" || die "'$python -m venv' failed; install the venv module (Debian: apt-get install python3-venv)"
  if ! "$venv/bin/python" -m pip install --disable-pip-version-check -q "torch==$TORCH_VERSION"; then
    rm -rf "$venv"
    die "pip could not install torch==$TORCH_VERSION (is the package registry reachable? is there disk space?)"
  fi
  touch "$venv/.painvrl-complete"
fi

torch_dir=$(torch_dir_of "$venv")
[ -n "$torch_dir" ] && [ -d "$torch_dir/lib" ] || die "torch in $venv has no lib/ directory; remove $venv and run this script again"
abi=$("$venv/bin/python" -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))' 2>/dev/null || echo "?")
[ "$abi" = "1" ] || die "torch in $venv reports C++11 ABI '$abi'; this set-up expects 1 (set LIBTORCH_CXX11_ABI=0 and LIBTORCH yourself to override)"

if [ "$(readlink "$link" 2>/dev/null || true)" != "$torch_dir" ]; then
  rm -f "$link"
  ln -s "$torch_dir" "$link"
  note "linked $link -> $torch_dir"
fi
note "libtorch $TORCH_VERSION ready"
