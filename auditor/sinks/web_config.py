"""`--web-config-file`: TLS and basic auth for the metrics endpoint, in the Prometheus
exporter-toolkit format (https://github.com/prometheus/exporter-toolkit, docs/web-configuration.md)
that node_exporter and Prometheus itself read:

    tls_server_config:
      cert_file: /etc/egress-auditor/tls.crt
      key_file: /etc/egress-auditor/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional (mTLS)
      client_ca_file: /etc/egress-auditor/ca.crt
      min_version: TLS12
    http_server_config:
      headers: {X-Frame-Options: deny}
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hash (htpasswd -nBC 10 "" | tr -d ':\\n')

Go-specific tuning keys (`cipher_suites`, `curve_preferences`, `prefer_server_cipher_suites`,
`http2`) are accepted and ignored with a warning: Python's TLS stack chooses its own. Any other
key, a missing file or a hash that is not bcrypt is a one-line error naming the file and key.
"""
from __future__ import annotations

import ssl
import sys
import threading
from pathlib import Path
from typing import Any, NoReturn

import yaml

from auditor.errors import SettingsError

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_VERSIONS = {"TLS10": ssl.TLSVersion.TLSv1, "TLS11": ssl.TLSVersion.TLSv1_1,
             "TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}
_TLS_KEYS = {"cert_file", "key_file", "client_auth_type", "client_ca_file", "min_version",
             "max_version", "client_allowed_sans", "cert", "key"}
_IGNORED = {"cipher_suites", "curve_preferences", "prefer_server_cipher_suites"}
_HTTP_KEYS = {"headers"}
_HTTP_IGNORED = {"http2"}


class WebConfig:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.tls: ssl.SSLContext | None = None
        self.users: dict[str, bytes] = {}
        self.headers: dict[str, str] = {}
        self._ok: set[tuple[str, str]] = set()     # (user, password) verified once: bcrypt is slow
        self._lock = threading.Lock()
        doc = self._read()
        for key in doc:
            if key not in ("tls_server_config", "http_server_config", "basic_auth_users"):
                self._fail(key, "unknown key")
        if doc.get("tls_server_config") is not None:
            self.tls = self._tls(self._mapping(doc, "tls_server_config"))
        http = self._mapping(doc, "http_server_config") if doc.get("http_server_config") else {}
        for key, value in http.items():
            if key in _HTTP_IGNORED:
                self._warn(f"http_server_config.{key}")
            elif key not in _HTTP_KEYS:
                self._fail(f"http_server_config.{key}", "unknown key")
        self.headers = {str(k): str(v) for k, v in (http.get("headers") or {}).items()}
        users = self._mapping(doc, "basic_auth_users") if doc.get("basic_auth_users") else {}
        for user, hashed in users.items():
            if not isinstance(hashed, str) or not hashed.startswith(("$2a$", "$2b$", "$2y$")):
                self._fail(f"basic_auth_users.{user}", "not a bcrypt hash ($2y$...)")
            self.users[str(user)] = hashed.encode()

    def check(self, user: str, password: str) -> bool:
        """Basic auth: the user exists and the password matches its bcrypt hash."""
        import bcrypt   # only configurations with users pay for it
        hashed = self.users.get(user)
        if hashed is None:
            bcrypt.checkpw(password.encode(), next(iter(self.users.values())))  # same cost
            return False
        with self._lock:
            if (user, password) in self._ok:
                return True
        if not bcrypt.checkpw(password.encode(), hashed):
            return False
        with self._lock:
            if len(self._ok) < 64:
                self._ok.add((user, password))
        return True

    # -- parsing ------------------------------------------------------------------------
    def _read(self) -> dict[str, Any]:
        try:
            doc = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise SettingsError(f"{self.path}: cannot read web config: {exc.strerror or exc}") from None
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SettingsError(f"{self.path}: invalid web config: {str(exc).splitlines()[0]}") from None
        if not isinstance(doc, dict):
            raise SettingsError(f"{self.path}: a web config is a mapping (tls_server_config, "
                                "http_server_config, basic_auth_users)")
        return doc

    def _mapping(self, doc: dict, key: str) -> dict:
        value = doc.get(key)
        if not isinstance(value, dict):
            self._fail(key, "must be a mapping")
        return value

    def _file(self, conf: dict, key: str) -> str:
        value = conf.get(key)
        if not value:
            self._fail(f"tls_server_config.{key}", "missing")
        path = Path(value)
        if not path.is_absolute():
            path = self.path.parent / path      # relative to the config file, as the toolkit does
        if not path.is_file():
            self._fail(f"tls_server_config.{key}", f"{path}: no such file")
        return str(path)

    def _tls(self, conf: dict) -> ssl.SSLContext:
        for key in conf:
            if key in _IGNORED:
                self._warn(f"tls_server_config.{key}")
            elif key not in _TLS_KEYS:
                self._fail(f"tls_server_config.{key}", "unknown key")
        if "cert" in conf or "key" in conf:
            self._fail("tls_server_config.cert", "inline certificates are not supported; use cert_file/key_file")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
            if key in conf:
                if conf[key] not in _VERSIONS:
                    self._fail(f"tls_server_config.{key}", f"{conf[key]!r}; one of {', '.join(_VERSIONS)}")
                setattr(ctx, attr, _VERSIONS[conf[key]])
        try:
            ctx.load_cert_chain(self._file(conf, "cert_file"), self._file(conf, "key_file"))
        except ssl.SSLError as exc:
            self._fail("tls_server_config.cert_file", f"cannot load certificate and key: {exc.reason}")
        auth = conf.get("client_auth_type", "NoClientCert")
        if auth not in _CLIENT_AUTH:
            self._fail("tls_server_config.client_auth_type", f"{auth!r}; one of {', '.join(_CLIENT_AUTH)}")
        ctx.verify_mode = _CLIENT_AUTH[auth]
        if ctx.verify_mode != ssl.CERT_NONE:
            if "client_ca_file" in conf:
                ctx.load_verify_locations(self._file(conf, "client_ca_file"))
            elif auth in ("RequireAndVerifyClientCert", "VerifyClientCertIfGiven"):
                self._fail("tls_server_config.client_ca_file", f"needed by {auth}")
        if conf.get("client_allowed_sans"):
            self._fail("tls_server_config.client_allowed_sans", "not supported here; restrict "
                       "clients with client_ca_file instead")
        return ctx

    def _fail(self, key: str, why: str) -> NoReturn:
        raise SettingsError(f"{self.path}: {key}: {why}")

    def _warn(self, key: str) -> None:
        print(f"egress-auditor: warning: {self.path}: {key} is ignored (Python's TLS stack "
              "chooses its own)", file=sys.stderr)
