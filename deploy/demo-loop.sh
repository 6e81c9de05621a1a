#!/bin/sh
# The compose `demo` profile's auditor: replays the bundled demo captures again every
# EGRESS_AUDITOR_DEMO_EVERY seconds (default 10), each pass continuing the capture's clock, and
# serves the metrics on EGRESS_AUDITOR_METRICS_LISTEN's port until SIGTERM. No live traffic and
# no capabilities needed; no audit events written (the loop would fill the volume).
set -eu
dir="${EGRESS_AUDITOR_DEMO_DIR:-/usr/share/egress-auditor/demo}"
listen="${EGRESS_AUDITOR_METRICS_LISTEN:-0.0.0.0:19807}"
exec egress-auditor replay "$dir"/*.pcap --policy "$dir/policy.yaml" \
    --metrics-port "${listen##*:}" --loop "${EGRESS_AUDITOR_DEMO_EVERY:-10}" --quiet "$@"
