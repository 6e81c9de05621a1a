# egress-auditor as a container: the package built as a wheel, installed into a slim Python.
#
#   docker build -t egress-auditor:local .
#   docker compose --profile live up -d          # see docker-compose.yml and docs/deploy.md
#
# Runs as root because AF_PACKET capture needs CAP_NET_RAW in the process's effective set;
# docker-compose.yml drops every capability but NET_RAW and NET_ADMIN (the latter raises the
# socket receive buffer beyond rmem_max). Nothing is written inside the image at run time:
# bytecode is compiled at build time and PYTHONDONTWRITEBYTECODE is set, so the root file
# system can be read-only; audit events go to a volume (/var/log/egress-auditor).

ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY auditor ./auditor
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim-bookworm
# libpcap: scapy compiles the capture's BPF filter with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libpcap0.8 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /tmp/wheels
RUN python -m pip install --no-cache-dir --compile /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels \
 && mkdir -p /etc/egress-auditor /var/log/egress-auditor /usr/share/egress-auditor
# The demo captures and their policy, for `docker compose --profile demo up`.
COPY pcaps/demo/*.pcap pcaps/demo/policy.yaml /usr/share/egress-auditor/demo/
COPY deploy/demo-loop.sh /usr/local/bin/egress-auditor-demo
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    EGRESS_AUDITOR_METRICS_LISTEN=0.0.0.0:19807
USER root
EXPOSE 19807
VOLUME ["/var/log/egress-auditor"]
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('EGRESS_AUDITOR_METRICS_LISTEN', ':19807').rsplit(':', 1)[1]; urllib.request.urlopen(f'http://127.0.0.1:{port}/metrics', timeout=4)"]
ENTRYPOINT ["egress-auditor"]
CMD ["run", "--interface", "eth0", "--policy", "/etc/egress-auditor/policy.yaml", \
     "--events", "/var/log/egress-auditor/audit.jsonl"]
