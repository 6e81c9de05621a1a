#!/usr/bin/env bash
# Re-resolve requirements.lock: every runtime dependency of pyproject.toml, pinned, with the
# sha256 of every file PyPI has for each pinned release. Run on Linux x86_64 with Python 3.11
# (what the lock is for: the Dockerfile's base and the wheelhouse), after changing
# `dependencies` in pyproject.toml; then rebuild the wheelhouse and the image.
#
#   bash scripts/update-lock.sh            # needs pip-tools (the `test` extra) and PyPI
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import sys, platform; assert sys.version_info[:2] == (3, 11) and platform.machine() == "x86_64", \
    "the lock is for Python 3.11 on x86_64"'
# The machine's own pip configuration (extra indexes, find-links, constraints) must not leak in.
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cp pyproject.toml "$tmp/"
(
  cd "$tmp"
  while read -r var; do unset "$var"; done < <(compgen -e | grep '^PIP_' || true)
  PIP_CONFIG_FILE=/dev/null python3 -m piptools compile --quiet --generate-hashes --strip-extras \
      --allow-unsafe --no-emit-index-url --no-emit-find-links --output-file requirements.lock pyproject.toml
)
sed 's|#    pip-compile --allow-unsafe|#    scripts/update-lock.sh, which runs: pip-compile --allow-unsafe|' \
    "$tmp/requirements.lock" > requirements.lock
echo "requirements.lock: $(grep -c '==' requirements.lock) pinned packages"
