# egress-auditor as a container: the locked dependencies and the package's wheel, installed
# into a slim Python pinned by digest.
#
#   docker build -t egress-auditor:local .
#   docker compose --profile live up -d          # see docker-compose.yml and docs/deploy.md
#
# Reproducible inputs: the base image by digest (refresh it with scripts/refresh-base-digest.sh
# on a machine that can reach the registry), every Python dependency from requirements.lock
# with its sha256 checked (scripts/build-wheelhouse.sh, the same wheelhouse as the offline
# install), and libpcap at bookworm's version.
#
# Runs as root because AF_PACKET capture needs CAP_NET_RAW in the process's effective set, and
# container runtimes grant added capabilities to root only; docker-compose.yml and the
# Kubernetes DaemonSet drop every capability but NET_RAW and NET_ADMIN (the latter raises the
# socket receive buffer beyond rmem_max) and capture only; their opt-in attribution (compose's
# override file, the Kubernetes component) adds SYS_PTRACE and DAC_READ_SEARCH and the host PID
# namespace. Nothing is written inside the image at run time:
# bytecode is compiled at build time and PYTHONDONTWRITEBYTECODE is set, so the root file
# system can be read-only; audit events go to a volume (/var/log/egress-auditor) or stdout.

# python:3.11-slim-bookworm. The digest was read from a public record of a Docker Hub manifest
# check: it could not be resolved where this file was written (no registry access there).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# A C compiler for the compiled core (setup.py builds the auditor/**/*.pyx twins into our
# wheel); only this stage has it, nothing of it ships.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md requirements.lock ./
COPY scripts/build-wheelhouse.sh ./scripts/
COPY auditor ./auditor
# Every dependency as a wheel, each file checked against the lock's hashes; plus our wheel,
# which must hold the compiled core: all 5 twins of auditor/core.py's TWINS (a pure wheel here
# would mean the compiler step failed; tests/deploy/test_dockerfile.py keeps the count true).
RUN bash scripts/build-wheelhouse.sh /wheels \
 && test "$(python -m zipfile -l /wheels/egress_auditor-*.whl | grep -cE '^auditor/[^ ]+\.so ')" -eq 5

FROM ${PYTHON_IMAGE}
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libpcap: scapy compiles the capture's BPF filter with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8=1.10.3-1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /tmp/wheels
# Where the service tags' index is built below and read at run time (never inside the package).
ENV EGRESS_AUDITOR_CACHE_DIR=/var/cache/egress-auditor
# The dependencies with --require-hashes from the lock, then the package itself; no index.
RUN python -m pip install --no-cache-dir --no-index --find-links /tmp/wheels --compile \
        --require-hashes -r /tmp/wheels/requirements.lock \
 && python -m pip install --no-cache-dir --no-index --no-deps --compile /tmp/wheels/egress_auditor-*.whl \
 && rm -rf /tmp/wheels \
 && mkdir -p /etc/egress-auditor /var/log/egress-auditor /usr/share/egress-auditor "$EGRESS_AUDITOR_CACHE_DIR" \
 && python -c "from auditor.policy.servicetags import ServiceTags; ServiceTags.load()"
# (the last step prebuilds the bundled service tags' index in the cache directory: the root file
# system is read-only at run time, and the index saves ~0.5 s at every start)
# The demo captures and their policy, for `docker compose --profile demo up`.
COPY pcaps/demo/*.pcap pcaps/demo/policy.yaml /usr/share/egress-auditor/demo/
COPY deploy/demo-loop.sh /usr/local/bin/egress-auditor-demo
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    EGRESS_AUDITOR_METRICS_LISTEN=0.0.0.0:19807
# Root on purpose (see the top of this file): the deployments drop every capability but four.
# hadolint ignore=DL3002
USER 0:0
EXPOSE 19807
VOLUME ["/var/log/egress-auditor"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('EGRESS_AUDITOR_METRICS_LISTEN', ':19807').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=4)"]
ENTRYPOINT ["egress-auditor"]
CMD ["run", "--interface", "eth0", "--policy", "/etc/egress-auditor/policy.yaml", \
     "--events", "/var/log/egress-auditor/audit.jsonl"]
