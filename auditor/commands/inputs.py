"""What every command that audits traffic reads from its arguments: settings, captures."""
from __future__ import annotations

from auditor import settings as settings_mod
from auditor.sources.pcap import CaptureFile


def settings_from_args(args, **extra):
    """Settings from `--config`, the environment and the flags `replay`, `run` and `suggest`
    share (flags that a command does not have are simply absent)."""
    get = lambda name: getattr(args, name, None)  # noqa: E731
    flags = dict(policy=get("policy"), service_tags=get("service_tags"), region=get("region"),
                 node_networks=get("node_network"), events=get("events"), as_mode=get("as_mode"),
                 dns_events=False if get("no_dns_events") else None,
                 metrics_file=get("metrics_file"))
    flags.update(extra)
    return settings_mod.load(get("config"), **flags)


def open_captures(paths) -> list[CaptureFile]:
    """Open every capture before any is read, so a bad path fails at once."""
    return [CaptureFile(path) for path in paths]
