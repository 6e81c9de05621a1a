#!/usr/bin/env bash
# Build an offline wheelhouse: every runtime dependency as a wheel, exactly the versions and
# files requirements.lock pins (pip checks every file against the lock's sha256 hashes), plus
# egress-auditor's own wheel, a copy of the lock and SHA256SUMS. Install it where there is
# no index (an approved-only workspace's compute):
#
#   python3 -m venv /opt/egress-auditor
#   /opt/egress-auditor/bin/pip install --no-index --find-links WHEELHOUSE egress-auditor
#
# (deploy/azureml/setup-compute-instance.sh does exactly that.) Needs PyPI, once, here.
#
#   bash scripts/build-wheelhouse.sh [OUT]                 # default dist/wheelhouse; this Python
#   bash scripts/build-wheelhouse.sh --python-version 3.12 OUT   # wheels for another CPython (x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."
target=() out=dist/wheelhouse
while [ $# -gt 0 ]; do
  case "$1" in
    --python-version)
      v="${2//./}"
      target=(--python-version "$2" --implementation cp --abi "cp$v" --abi abi3 --abi none
              --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
              --platform manylinux_2_28_x86_64 --platform manylinux_2_34_x86_64 --platform any)
      shift 2 ;;
    -*) echo "build-wheelhouse: unknown option $1" >&2; exit 2 ;;
    *) out="$1"; shift ;;
  esac
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"
rm -f "$out"/*.whl "$out"/SHA256SUMS "$out"/requirements.lock
# Only PyPI, only wheels, only the locked files: none of this machine's pip configuration.
while read -r var; do unset "$var"; done < <(compgen -e | grep '^PIP_' || true)
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
python3 -m pip download --quiet --require-hashes --no-deps --only-binary=:all: \
    "${target[@]}" --dest "$out" -r requirements.lock
# Our wheel: with the compiled core for this Python (setup.py; needs a C compiler, else it is
# pure Python with a notice); for another Python, pure (the compiled part would not load there).
if [ ${#target[@]} -gt 0 ]; then
  EGRESS_AUDITOR_NO_COMPILE=1 python3 -m pip wheel --quiet --no-deps --wheel-dir "$out" .
else
  python3 -m pip wheel --quiet --no-deps --wheel-dir "$out" .
fi
cp requirements.lock "$out/requirements.lock"
(cd "$out" && sha256sum ./*.whl requirements.lock > SHA256SUMS)
echo "wheelhouse $out: $(find "$out" -name '*.whl' | wc -l) wheels, $(du -sh "$out" | cut -f1)"
