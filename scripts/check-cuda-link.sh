#!/usr/bin/env bash
# Fails when a built executable links libtorch but not its CUDA backend although the libtorch in
# use has one (run by .ci/run after the workspace's binaries, examples and tests are built).
# Without libtorch_cuda.so among an executable's NEEDED libraries, CUDA never loads: the linker's
# --as-needed drops it (see crates/painvrl-build). A CPU-only libtorch makes this check a no-op.
# Usage: scripts/check-cuda-link.sh [TARGET_PROFILE_DIR ...]   (default: target/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
libtorch=${LIBTORCH:-.libtorch}
if [ ! -d "$libtorch/lib" ]; then # e.g. a GPU machine with PyTorch but no set-up: its torch package
  libtorch=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))' 2>/dev/null || true)
fi
[ -n "$libtorch" ] && [ -d "$libtorch/lib" ] || { echo "check-cuda-link: no libtorch found (LIBTORCH, .libtorch or python3's torch); run scripts/setup-libtorch.sh" >&2; exit 1; }
if [ ! -e "$libtorch/lib/libtorch_cuda.so" ]; then
  echo "check-cuda-link: $libtorch/lib has no libtorch_cuda.so (CPU-only libtorch); nothing to check"
  exit 0
fi
dirs=("$@"); [ ${#dirs[@]} -gt 0 ] || dirs=(target/debug)
checked=0; missing=0
while IFS= read -r -d '' exe; do
  head -c 4 "$exe" 2>/dev/null | grep -q 'ELF' || continue
  needed=$(readelf -d "$exe" 2>/dev/null | grep NEEDED || true)
  grep -q 'libtorch_cpu.so' <<<"$needed" || continue # does not link libtorch at all
  checked=$((checked + 1))
  if ! grep -q 'libtorch_cuda.so' <<<"$needed"; then
    echo "check-cuda-link: $exe links libtorch_cpu.so but not libtorch_cuda.so" >&2
    missing=$((missing + 1))
  fi
done < <(find "${dirs[@]}" -maxdepth 2 -type f -perm -u+x ! -name '*.so' ! -name '*.d' ! -name '*.rlib' -print0)
if [ "$checked" -eq 0 ]; then
  echo "check-cuda-link: no executable linking libtorch found under ${dirs[*]}; build first" >&2
  exit 1
fi
if [ "$missing" -gt 0 ]; then
  echo "check-cuda-link: $missing of $checked executables would never load CUDA" >&2
  exit 1
fi
echo "check-cuda-link: all $checked executables link libtorch_cuda.so"
