"""Every auditor option in one pydantic model: the `--config` YAML, `EGRESS_AUDITOR_*`
environment overrides (nested with `__`, e.g. `EGRESS_AUDITOR_DETECTORS__BULK_UPLOAD__MIN_BYTES`),
and command-line flags, in increasing order of precedence.

The policy itself (the user's Azure files) is not here: it is read by `auditor.policy`.
"""
from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

DEFAULT_NODE_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
AZURE_DNS = "168.63.129.16"
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32


class ConfigError(Exception):
    """A settings file or override is unusable; the message is one line naming where."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DnsTunnelSettings(Strict):
    """`dns_tunneling` thresholds; why these values: docs/detectors.md."""
    window_seconds: float = Field(300.0, gt=0)
    min_queries: int = Field(25, ge=1, description="suspicious queries in the window")
    long_subdomain: int = Field(50, ge=1, description="subdomain bytes that make a query suspicious")
    entropy_bits: float = Field(3.5, ge=0, description="subdomain entropy (bits/byte) that makes it suspicious")
    entropy_min_length: int = Field(20, ge=1, description="entropy only judged over this many bytes")
    min_distinct_names: int = Field(15, ge=1, description="distinct suspicious names in the window")
    txt_long_name: int = Field(30, ge=1, description="subdomain bytes of a TXT query that count as long")
    txt_min_queries: int = Field(5, ge=1, description="distinct long TXT names in the window")
    txt_qtypes: list[int] = Field(default_factory=lambda: [16, 15, 5],
                                  description="query types judged like TXT (TXT, MX, CNAME carry data back)")
    ignore_domains: list[str] = Field(default_factory=list,
                                      description="registered domains never reported (e.g. AV reputation lookups)")


class BulkUploadSettings(Strict):
    """`bulk_upload` thresholds."""
    window_seconds: float = Field(600.0, gt=0)
    min_bytes: int = Field(20 * 1024 * 1024, ge=1)
    min_pcr: float = Field(0.5, ge=-1, le=1)


DETECTOR_NAMES = ("dns_tunneling", "direct_ip", "dns_resolver_bypass", "encrypted_dns",
                  "sni_mismatch", "bulk_upload")


class DetectorSettings(Strict):
    dns_tunneling: DnsTunnelSettings = DnsTunnelSettings()
    bulk_upload: BulkUploadSettings = BulkUploadSettings()
    disabled: list[str] = Field(default_factory=list, description="detectors not to run")
    window_seconds: float = Field(300.0, gt=0, description="re-fire window for the other detectors")
    max_keys: int = Field(50_000, ge=1, description="cap on per-key detector state")
    doh_resolvers: list[str] = Field(default_factory=lambda: [
        "dns.google", "dns.google.com", "cloudflare-dns.com", "mozilla.cloudflare-dns.com",
        "one.one.one.one", "1dot1dot1dot1.cloudflare-dns.com", "dns.quad9.net", "dns9.quad9.net",
        "dns11.quad9.net", "doh.opendns.com", "doh.familyshield.opendns.com", "dns.adguard.com",
        "dns.adguard-dns.com", "doh.cleanbrowsing.org", "dns.nextdns.io", "doh.dns.sb",
        "chrome.cloudflare-dns.com", "doh.mullvad.net"])
    doh_resolver_ips: list[str] = Field(default_factory=lambda: [
        # Google, Cloudflare, Quad9, OpenDNS, AdGuard public resolvers (v4 and v6 anycast):
        # HTTP(S) to these is DoH whatever name it carries, or none.
        "8.8.8.8", "8.8.4.4", "2001:4860:4860::8888", "2001:4860:4860::8844",
        "1.1.1.1", "1.0.0.1", "2606:4700:4700::1111", "2606:4700:4700::1001",
        "9.9.9.9", "149.112.112.112", "2620:fe::fe", "2620:fe::9",
        "208.67.222.222", "208.67.220.220", "94.140.14.14", "94.140.15.15"],
        description="public resolver addresses whose port 443/80 traffic is DoH")

    @field_validator("disabled")
    @classmethod
    def _known(cls, v: list[str]) -> list[str]:
        unknown = sorted(set(v) - set(DETECTOR_NAMES))
        if unknown:
            raise ValueError(f"unknown detector {unknown[0]!r}; known: {', '.join(DETECTOR_NAMES)}")
        return v

    @field_validator("doh_resolver_ips")
    @classmethod
    def _resolver_ips(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(x)) for x in v]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EGRESS_AUDITOR_", env_nested_delimiter="__",
                                      extra="forbid")

    policy: Path | None = None
    service_tags: Path | None = None
    region: str | None = None
    as_mode: str | None = None
    node_networks: list[str] = Field(default_factory=lambda: list(DEFAULT_NODE_NETWORKS))
    virtual_network: list[str] = Field(default_factory=list)
    dns_servers: list[str] = Field(default_factory=lambda: [AZURE_DNS])
    include: list[str] = Field(default_factory=list)
    events: str | None = None
    dns_events: bool = True
    metrics_file: Path | None = None
    metrics_listen: str = "0.0.0.0:19807"
    max_flows: int = Field(100_000, ge=16)
    max_dns_cache: int = Field(100_000, ge=16)
    max_pending_queries: int = Field(20_000, ge=16)
    max_destination_labels: int = Field(100, ge=1)
    detectors: DetectorSettings = DetectorSettings()

    @field_validator("node_networks", "virtual_network")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for c in v:
            ipaddress.ip_network(c, strict=False)
        return v

    @field_validator("dns_servers")
    @classmethod
    def _ips(cls, v: list[str]) -> list[str]:
        return [str(ipaddress.ip_address(x)) for x in v]

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings) -> tuple[PydanticBaseSettingsSource, ...]:
        # Command-line flags (init) beat the environment, which beats the config file.
        return init_settings, env_settings, _FileValues(settings_cls)


_file_values: ContextVar[dict[str, Any]] = ContextVar("file_values", default={})


class _FileValues(PydanticBaseSettingsSource):
    """The `--config` file's values, as the lowest-precedence settings source."""

    def get_field_value(self, field, field_name):  # required by the base class; unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get())


def load(config: Path | None = None, **flags: Any) -> Settings:
    """Settings from an optional YAML file, the environment, and non-None command-line flags."""
    where = "settings"
    file_values: dict[str, Any] = {}
    if config is not None:
        where = str(config)
        file_values = _read_yaml(config)
    token = _file_values.set(file_values)
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None and v != []})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise ConfigError(f"{where}: {field}: {err['msg']}") from None
    finally:
        _file_values.reset(token)


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounded nesting: PyYAML composes recursively, so a hostile file of
    thousands of `[` would otherwise end in a RecursionError traceback."""

    def compose_node(self, parent, index):  # type: ignore[override]
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                raise yaml.MarkedYAMLError(None, None, f"nested deeper than {MAX_CONFIG_DEPTH} levels",
                                           self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a settings file")
    try:
        data = yaml.load(raw, Loader=_Loader) or {}  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data
