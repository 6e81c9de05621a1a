"""Every auditor option in one pydantic model: the `--config` YAML, `EGRESS_AUDITOR_*`
environment overrides (nested with `__`, e.g. `EGRESS_AUDITOR_DETECTORS__BULK_UPLOAD__MIN_BYTES`),
and command-line flags, in increasing order of precedence.

The policy itself (the user's Azure files) is not here: it is read by `auditor.policy`.
"""
from __future__ import annotations

import ipaddress
from contextvars import ContextVar
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from auditor.detect import registry
from auditor.detect.base import Detector
from auditor.errors import SettingsError

DEFAULT_NODE_NETWORKS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
AZURE_DNS = "168.63.129.16"
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32


class CloudSettings(BaseModel):
    """What events say about where the node runs (ECS `cloud.*`); all optional."""
    model_config = ConfigDict(extra="forbid")
    provider: str | None = Field(None, description="e.g. azure (default: azure when a region or "
                                 "instance id is known)")
    region: str | None = Field(None, description="default: `region`, else the policy's location")
    instance_id: str | None = None
    imds: bool = Field(False, description="run: ask the Azure instance metadata service "
                       "(169.254.169.254) for region and VM id at start")


class BaseAuditorSettings(BaseSettings):
    """Every option but the detectors' (see `settings_class`)."""
    model_config = SettingsConfigDict(env_prefix="EGRESS_AUDITOR_", env_nested_delimiter="__",
                                      extra="forbid")
    detector_classes: ClassVar[tuple[type[Detector], ...]] = ()

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
    judge_loopback: bool = Field(False, description="judge flows to loopback addresses "
                                 "(127.0.0.0/8, ::1) and between the node's own addresses as "
                                 "egress (tests that stand in remote hosts on lo)")
    host_name: str | None = Field(None, description="ECS host.name (default: this host's name)")
    cloud: CloudSettings = Field(default_factory=lambda: CloudSettings())
    max_reassembly_bytes: int = Field(64 << 20, ge=1 << 16, description="bytes all TCP "
                                      "reassembly buffers may hold together")
    vxlan_ports: list[int] = Field(default_factory=lambda: [4789, 8472], description="UDP "
                                   "ports read as VXLAN (4789 IANA, 8472 Linux/flannel)")

    @field_validator("vxlan_ports")
    @classmethod
    def _ports(cls, v: list[int]) -> list[int]:
        for p in v:
            if not 0 < p < 65536:
                raise ValueError(f"{p} is not a UDP port")
        return v

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


@lru_cache(maxsize=16)
def settings_class(detectors: tuple[type[Detector], ...] = registry.DETECTORS
                   ) -> type[BaseAuditorSettings]:
    """The settings model with a `detectors:` section for exactly these detector classes."""
    section = registry.settings_model(detectors)
    cls = create_model("Settings", __base__=BaseAuditorSettings,
                       detectors=(section, Field(default_factory=section)))
    cls.detector_classes = detectors
    return cls


Settings = settings_class()


_file_values: ContextVar[dict[str, Any]] = ContextVar("file_values", default={})


class _FileValues(PydanticBaseSettingsSource):
    """The `--config` file's values, as the lowest-precedence settings source."""

    def get_field_value(self, field, field_name):  # required by the base class; unused
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_file_values.get())


def load(config: Path | None = None, *,
         detector_classes: tuple[type[Detector], ...] = registry.DETECTORS, **flags: Any) -> Any:
    """Settings from an optional YAML file, the environment, and non-None command-line flags."""
    where = "settings"
    file_values: dict[str, Any] = {}
    if config is not None:
        where = str(config)
        file_values = _read_yaml(config)
    token = _file_values.set(file_values)
    try:
        cls = settings_class(detector_classes)
        return cls(**{k: v for k, v in flags.items() if v is not None and v != []})
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        raise SettingsError(f"{where}: {field}: {err['msg']}") from None
    finally:
        _file_values.reset(token)


class _Loader(yaml.SafeLoader):
    """SafeLoader with bounded nesting: PyYAML composes recursively, so a hostile file of
    thousands of `[` would otherwise end in a RecursionError traceback."""

    def compose_node(self, parent, index):
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
        raise SettingsError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SettingsError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; not a settings file")
    try:
        data = yaml.load(raw, Loader=_Loader) or {}  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SettingsError(f"{path}{line}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SettingsError(f"{path}: expected a mapping of settings, got {type(data).__name__}")
    return data
