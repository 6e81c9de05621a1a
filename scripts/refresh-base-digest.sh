#!/usr/bin/env bash
# Resolve the current digest of the Dockerfile's base image and pin it (the PYTHON_IMAGE ARG).
# Run where the registry is reachable, with any one of crane, skopeo, regctl or docker buildx;
# review the diff, rebuild, commit. The digest is the multi-platform index's, as `docker pull`
# resolves it.
#
#   bash scripts/refresh-base-digest.sh [IMAGE]        # default python:3.11-slim-bookworm
set -euo pipefail
cd "$(dirname "$0")/.."
image="${1:-python:3.11-slim-bookworm}"
if command -v crane >/dev/null; then
  digest="$(crane digest "$image")"
elif command -v skopeo >/dev/null; then
  digest="$(skopeo inspect --raw "docker://docker.io/library/$image" | sha256sum | awk '{print "sha256:" $1}')"
elif command -v regctl >/dev/null; then
  digest="$(regctl image digest "$image")"
elif docker buildx version >/dev/null 2>&1; then
  digest="$(docker buildx imagetools inspect "$image" --format '{{json .Manifest}}' |
            python3 -c 'import json, sys; print(json.load(sys.stdin)["digest"])')"
else
  echo "refresh-base-digest: needs crane, skopeo, regctl or docker buildx" >&2
  exit 1
fi
[[ "$digest" =~ ^sha256:[0-9a-f]{64}$ ]] || { echo "refresh-base-digest: bad digest '$digest'" >&2; exit 1; }
sed -i -E "s|^ARG PYTHON_IMAGE=.*|ARG PYTHON_IMAGE=$image@$digest|" Dockerfile
sed -i -E '/^# python:3\.11-slim-bookworm\. The digest was read/,/^# check: it could not be resolved/d' Dockerfile
grep -n '^ARG PYTHON_IMAGE=' Dockerfile
