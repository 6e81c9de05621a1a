#!/usr/bin/env bash
# Azure ML compute-instance setup script: install egress-auditor with no download from the
# internet, start it as a systemd service, and fail loudly if capture does not start.
#
# Use it as the compute instance's creation (or startup) script: it runs as root with the
# working directory it was uploaded to in the workspace's file share (Notebooks, e.g.
# /home/azureuser/cloudfiles/code/Users/<you>), so paths below may be relative to it.
# Docs: docs/deploy.md#compute-instances.
#
#   setup-compute-instance.sh --wheelhouse egress-auditor/wheelhouse --policy egress-auditor/workspace.yml
#   setup-compute-instance.sh --image myregistry.azurecr.io/egress-auditor@sha256:... --policy ...
#
# Install sources (one of):
#   --wheelhouse DIR   a wheelhouse built by scripts/build-wheelhouse.sh (every dependency, hashes
#                      from requirements.lock), copied to the workspace's storage; installed with
#                      `pip install --no-index` into /opt/egress-auditor (needs Python 3.11 or
#                      newer on the node: --python, default the first python3.1x found)
#   --image REF        the image built from the Dockerfile and pushed to the workspace's container
#                      registry; pulled with the compute's managed identity (az acr login) when REF
#                      is in an Azure Container Registry, then run by the same unit through docker
# Options:
#   --policy FILE          the workspace's managed-network policy (default: ./workspace.yml)
#   --settings FILE        auditor settings YAML (default: none beyond the unit's)
#   --interface IF         capture interface (default: the one holding the default route)
#   --metrics-listen ADDR  /metrics address (default: 127.0.0.1:19807: scraped by a local agent)
#   --python PY            interpreter for --wheelhouse
#   --timeout SECONDS      how long to wait for capture to start (default: 60)
#   --attribution          also name the process, user and container behind each flow
#                          (default: capture only, --no-attribution, CAP_NET_RAW + CAP_NET_ADMIN).
#                          Adds CAP_SYS_PTRACE + CAP_DAC_READ_SEARCH: with --wheelhouse it installs
#                          deploy/systemd/egress-auditor.service.d/attribution.conf; with --image
#                          the container also shares the host's PID namespace. Run again without
#                          it to go back to capture only.
#
# Exit status: 0 when the unit runs and serves metrics (which it does only once its capture
# socket is open); 1 otherwise, after printing the unit's last log lines. A non-zero exit marks
# the setup script as failed in the compute instance's details (Logs folder of the file share).
#
# For tests, EGRESS_AUDITOR_SETUP_ROOT prefixes every path written, and SYSTEMCTL/JOURNALCTL
# name the service manager's commands.
set -euo pipefail

ROOT="${EGRESS_AUDITOR_SETUP_ROOT:-}"
SYSTEMCTL="${SYSTEMCTL:-systemctl}"
JOURNALCTL="${JOURNALCTL:-journalctl}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
UNIT=egress-auditor.service
PREFIX=/opt/egress-auditor
USER_NAME=egress-auditor

die() { echo "egress-auditor setup: FAILED: $*" >&2; exit 1; }
say() { echo "egress-auditor setup: $*" >&2; }

wheelhouse="" image="" policy="./workspace.yml" settings="" interface="" python=""
listen="127.0.0.1:19807" timeout=60 attribution=""
while [ $# -gt 0 ]; do
  case "$1" in
    --wheelhouse) wheelhouse="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --policy) policy="$2"; shift 2 ;;
    --settings) settings="$2"; shift 2 ;;
    --interface) interface="$2"; shift 2 ;;
    --metrics-listen) listen="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    --timeout) timeout="$2"; shift 2 ;;
    --attribution) attribution=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//;/^set -euo/d'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[ -n "$wheelhouse" ] || [ -n "$image" ] || die "give --wheelhouse DIR or --image REF"
[ -z "$wheelhouse" ] || [ -z "$image" ] || die "give --wheelhouse or --image, not both"
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then die "run as root (compute-instance setup scripts do)"; fi
[ -f "$policy" ] || die "policy file '$policy' not found (working directory: $PWD)"
[ -z "$settings" ] || [ -f "$settings" ] || die "settings file '$settings' not found"
if [ -z "$interface" ]; then
  interface="$(ip -o route show default 2>/dev/null | awk '{for (i = 1; i < NF; i++) if ($i == "dev") {print $(i + 1); exit}}')"
  [ -n "$interface" ] || die "no default route to take the capture interface from: give --interface"
fi

# -- files shared by both install sources ------------------------------------------------------
install -d -m 0755 "$ROOT/etc/egress-auditor" "$ROOT/etc/systemd/system" "$ROOT/etc/logrotate.d" "$ROOT/etc/default"
install -m 0644 "$policy" "$ROOT/etc/egress-auditor/policy.yaml"
if [ -n "$settings" ]; then
  install -m 0644 "$settings" "$ROOT/etc/egress-auditor/auditor.yaml"
elif [ ! -f "$ROOT/etc/egress-auditor/auditor.yaml" ]; then
  printf '# egress-auditor settings (README "Settings"); every key optional.\n{}\n' > "$ROOT/etc/egress-auditor/auditor.yaml"
fi
cat > "$ROOT/etc/default/egress-auditor" <<EOF
# Read by $UNIT (EnvironmentFile). Any EGRESS_AUDITOR_* setting may be added.
CAPTURE_INTERFACE=$interface
EGRESS_AUDITOR_METRICS_LISTEN=$listen
EGRESS_AUDITOR_OBSERVER_NODE_NAME=${CI_NAME:-$(hostname)}
EOF
install -m 0644 "$HERE/../systemd/egress-auditor.service" "$ROOT/etc/systemd/system/$UNIT"
install -m 0644 "$HERE/../systemd/egress-auditor.logrotate" "$ROOT/etc/logrotate.d/egress-auditor"
if [ -z "$ROOT" ] && ! id -u "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"
fi

# -- install source ------------------------------------------------------------------------------
# The drop-ins this script writes (a previous run's, perhaps from the other source or with the
# other --attribution); any other file there is the administrator's and stays.
dropin="$ROOT/etc/systemd/system/$UNIT.d"
rm -f "$dropin/container.conf" "$dropin/attribution.conf"
if [ -d "$dropin" ]; then rmdir --ignore-fail-on-non-empty "$dropin"; fi
if [ -n "$wheelhouse" ]; then
  [ -d "$wheelhouse" ] || die "wheelhouse '$wheelhouse' is not a directory"
  ls "$wheelhouse"/egress_auditor-*.whl >/dev/null 2>&1 || die "no egress_auditor-*.whl in '$wheelhouse'"
  if [ -z "$python" ]; then
    for candidate in python3.13 python3.12 python3.11 python3 /anaconda/bin/python3; do
      if command -v "$candidate" >/dev/null 2>&1 &&
         "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        python="$candidate"; break
      fi
    done
    [ -n "$python" ] || die "no Python 3.11+ on this node for the wheelhouse: give --python, or use --image"
  fi
  say "installing from $wheelhouse with $python into $PREFIX (no index)"
  rm -rf "$ROOT$PREFIX"
  "$python" -m venv "$ROOT$PREFIX"
  # Only the wheelhouse: no index, and none of the node's pip configuration (find-links,
  # constraints, extra indexes: files and PIP_* variables alike).
  (
    while read -r var; do unset "$var"; done < <(compgen -e | grep '^PIP_' || true)
    PIP_CONFIG_FILE=/dev/null "$ROOT$PREFIX/bin/python" -m pip install --quiet --no-index \
        --find-links "$wheelhouse" --no-cache-dir --disable-pip-version-check egress-auditor
  ) || die "pip could not install egress-auditor from '$wheelhouse' alone (built for another Python?)"
  if [ -n "$attribution" ]; then
    install -d -m 0755 "$dropin"
    install -m 0644 "$HERE/../systemd/$UNIT.d/attribution.conf" "$dropin/attribution.conf"
  fi
else
  command -v docker >/dev/null 2>&1 || die "--image needs docker on the node"
  registry="${image%%/*}"
  if [[ "$registry" == *.azurecr.io ]]; then
    say "logging in to $registry with the compute's managed identity"
    az login --identity --allow-no-subscriptions >/dev/null || die "az login --identity failed (no managed identity on this compute?)"
    az acr login --name "${registry%%.azurecr.io}" >/dev/null || die "az acr login $registry failed"
  fi
  say "pulling $image"
  docker pull --quiet "$image" >/dev/null || die "docker pull $image failed"
  if [ -n "$attribution" ]; then
    # Attribution reads every process's /proc/PID/fd (another user's only with both capabilities).
    what="NET_RAW, NET_ADMIN, and SYS_PTRACE + DAC_READ_SEARCH and the host's PID namespace for attribution"
    pid_host=" --pid host" attribution_caps=" --cap-add SYS_PTRACE --cap-add DAC_READ_SEARCH" no_attribution=""
  else
    what="NET_RAW and NET_ADMIN only: capture, no attribution (--attribution adds it)"
    pid_host="" attribution_caps="" no_attribution=" --no-attribution"
  fi
  install -d -m 0755 "$dropin"
  cat > "$dropin/container.conf" <<EOF
# Written by setup-compute-instance.sh --image: the same unit, running the image through docker.
# The container gets the capabilities ($what), the read-only root and the host network; the
# unit's own process is the docker client, which needs the docker socket.
[Service]
User=root
Group=root
AmbientCapabilities=
Environment=DOCKER_CONFIG=/run/egress-auditor/docker
RuntimeDirectory=egress-auditor
ExecStartPre=
ExecStartPre=-/usr/bin/docker rm --force egress-auditor
ExecStart=
ExecStart=/usr/bin/docker run --rm --name egress-auditor --network host$pid_host \\
    --cap-drop ALL --cap-add NET_RAW --cap-add NET_ADMIN$attribution_caps --read-only --tmpfs /tmp \\
    --security-opt no-new-privileges --env-file /etc/default/egress-auditor \\
    -v /etc/egress-auditor:/etc/egress-auditor:ro -v /var/log/egress-auditor:/var/log/egress-auditor \\
    $image run --interface \${CAPTURE_INTERFACE} --config /etc/egress-auditor/auditor.yaml \\
    --policy /etc/egress-auditor/policy.yaml --events /var/log/egress-auditor/audit.jsonl$no_attribution
ExecStop=/usr/bin/docker stop --time 25 egress-auditor
ExecReload=
ExecReload=/usr/bin/docker kill --signal HUP egress-auditor
EOF
  # The container writes the log as root.
  sed -i 's/^\(\s*\)su egress-auditor egress-auditor/\1su root root/; s/create 0640 egress-auditor egress-auditor/create 0640 root root/' \
    "$ROOT/etc/logrotate.d/egress-auditor"
fi

# -- start and check ------------------------------------------------------------------------------
"$SYSTEMCTL" daemon-reload
"$SYSTEMCTL" enable "$UNIT" >/dev/null
"$SYSTEMCTL" restart "$UNIT"

host="${listen%:*}"; port="${listen##*:}"
host="${host#[}"; host="${host%]}"
if [ -z "$host" ] || [ "$host" = "0.0.0.0" ]; then host=127.0.0.1; fi
if [ "$host" = "::" ]; then host=::1; fi
url="http://$host:$port/metrics"
[[ "$host" == *:* ]] && url="http://[$host]:$port/metrics"
fetch() {
  python3 - "$url" <<'EOF' 2>/dev/null
import sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=3).read().decode()
sys.exit(0 if "egress_auditor_build_info" in body else 1)
EOF
}
deadline=$(( $(date +%s) + timeout ))
until fetch; do
  if ! "$SYSTEMCTL" is-active --quiet "$UNIT" && [ "$("$SYSTEMCTL" show -p NRestarts --value "$UNIT" 2>/dev/null || echo 0)" -ge 3 ]; then
    break
  fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    break
  fi
  sleep 1
done
if ! fetch; then
  echo "egress-auditor setup: the auditor's last messages:" >&2
  "$JOURNALCTL" -u "$UNIT" -n 40 --no-pager >&2 || true
  die "capture did not start on $interface within ${timeout}s ($url does not answer); egress on this node is NOT audited"
fi
if [ -n "$attribution" ]; then owners="flows attributed to their process"; else owners="capture only (no attribution)"; fi
say "capturing on $interface; metrics on $url; audit log /var/log/egress-auditor/audit.jsonl; $owners"
