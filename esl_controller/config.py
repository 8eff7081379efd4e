"""Configuration: one YAML file plus environment overrides, parsed once into frozen dataclasses.

Precedence (lowest to highest): built-in defaults, the YAML file, environment variables, command-line flags.

* The file path comes from ``--config`` or ``ESL_CONTROLLER_CONFIG``; a missing explicit file is an error.
* Every key can be overridden from the environment as ``ESL_CONTROLLER_<SECTION>__<KEY>`` (double underscore
  between levels), for example ``ESL_CONTROLLER_DATABASE__URL`` or ``ESL_CONTROLLER_HTTP__PORT``.
* Unknown keys and values of the wrong type are a :class:`ConfigError` that names the dotted key.

This is the only module that reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from esl_controller.capture.manager import CaptureSettings

ENV_PREFIX = "ESL_CONTROLLER_"
ENV_CONFIG_PATH = "ESL_CONTROLLER_CONFIG"
SECRET_KEYS = frozenset(
    {
        "password",
        "secret",
        "jwt_secret",
        "key",
        "hook_secret",
        "api_key",
        "token",
        "bootstrap_api_key",
        "server_secret",
    }
)


class ConfigError(ValueError):
    """A configuration value is unknown, missing or of the wrong type; the message names the key."""


@dataclasses.dataclass(frozen=True)
class DatabaseSettings:
    #: peewee-style URL: ``sqlite:///path.db`` or ``postgresql://user@host:5432/db``. Empty: SQLite in data_dir.
    url: str = ""
    #: connections kept by the PostgreSQL pool
    max_connections: int = 20
    #: seconds a connection may stay idle in the pool before it is recycled
    stale_timeout: int = 300
    #: SQLite busy timeout in seconds
    busy_timeout: float = 5.0


@dataclasses.dataclass(frozen=True)
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    #: URL clients use to reach this API (recording URLs, webCallUrl); empty: http://host:port
    public_url: str = ""
    #: largest JSON request body accepted, in bytes
    max_body_bytes: int = 1_048_576
    #: largest file upload accepted by POST /file, in bytes
    max_file_bytes: int = 50 * 1_048_576


@dataclasses.dataclass(frozen=True)
class SupabaseSettings:
    #: HS256 shared secret of the Supabase project (Settings > API > JWT secret)
    jwt_secret: str = ""
    #: a JWKS document for RS256/ES256 tokens, from a file or a URL
    jwks_file: str = ""
    jwks_url: str = ""
    audience: str = "authenticated"
    #: expected ``iss`` claim, e.g. https://<project>.supabase.co/auth/v1 (empty: not checked)
    issuer: str = ""
    #: seconds of clock skew allowed on exp/nbf/iat
    leeway: int = 30

    @property
    def enabled(self) -> bool:
        return bool(self.jwt_secret or self.jwks_file or self.jwks_url)


@dataclasses.dataclass(frozen=True)
class AuthSettings:
    supabase: SupabaseSettings = dataclasses.field(default_factory=SupabaseSettings)
    #: shared secret the FreeSWITCH HTTP hooks may present instead of an API key (X-Hook-Secret header)
    hook_secret: str = ""


@dataclasses.dataclass(frozen=True)
class SecretsSettings:
    #: a urlsafe-base64 32-byte key (Fernet) for credential secrets; empty: read or create key_file
    key: str = ""
    #: path of the generated key file (mode 0600); empty: <data_dir>/secret.key
    key_file: str = ""


@dataclasses.dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"
    #: one JSON object per line instead of text
    json: bool = False


@dataclasses.dataclass(frozen=True)
class FreeswitchSettings:
    #: connect to FreeSWITCH's event socket (inbound) and serve the outbound socket
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8021
    password: str = "ClueCon"
    #: seconds to wait for a command reply
    command_timeout: float = 5.0
    #: address the dialplan's ``socket`` app connects to
    outbound_host: str = "127.0.0.1"
    outbound_port: int = 8084
    #: mod_audio_fork WebSocket server
    fork_host: str = "127.0.0.1"
    fork_port: int = 8085
    #: hangup cause for calls to numbers nobody owns
    unknown_number_cause: str = "UNALLOCATED_NUMBER"
    #: sofia profile for outbound calls to a customer's SIP URI (``sofia/<profile>/<user@host>``)
    sip_profile: str = "external"
    #: number transfers: ``uuid_transfer <uuid> <number> <transfer_dialplan> <transfer_context>``; the context
    #: bridges the number through the gateway named in the channel variable ``esl_transfer_gateway``
    transfer_dialplan: str = "XML"
    transfer_context: str = "esl_transfer"
    #: seconds to wait for a ``bgapi originate`` result beyond the ring timeout
    originate_grace: float = 15.0


@dataclasses.dataclass(frozen=True)
class CallsSettings:
    #: server URL for ``assistant-request`` when a phone number has neither an assistant nor its own server URL
    server_url: str = ""
    #: sent as ``X-Vapi-Secret`` with the assistant-request (when set)
    server_secret: str = ""
    #: seconds to wait for the assistant-request answer
    assistant_request_timeout: float = 5.0
    #: defaults when the assistant does not say
    max_duration_seconds: float = 600.0
    ring_timeout_seconds: float = 60.0
    #: seconds a live-control request waits for the call session to take it
    control_timeout: float = 10.0
    #: seconds a session keeps processing late events (hangup complete, billsec) after the call ended
    end_grace_seconds: float = 2.0
    #: audio hooks: largest chunk accepted (bytes) and chunks buffered per call before dropping
    audio_chunk_max_bytes: int = 64_000
    audio_queue_chunks: int = 100
    #: API key the ``esl-controller calls hangup|control`` commands present to the running server
    api_key: str = ""


@dataclasses.dataclass(frozen=True)
class SloSettings:
    """Service-level objectives reported by ``GET /slo`` and ``/metrics``.

    Lower-is-better objectives (latencies, error rates) are ``breached`` above the target and ``at-risk``
    above ``target * (1 - at_risk_fraction)``. Higher-is-better ratios (availability, webhook success) apply
    the band to the error budget ``1 - target``: ``at-risk`` once more than ``(1 - at_risk_fraction)`` of
    the budget is used, ``breached`` below the target.
    """

    #: p95 of (first audio out - end of speech) per turn, seconds
    turn_latency_p95_seconds: float = 1.5
    #: calls ended with ``pipeline-error-*`` / calls ended
    pipeline_error_rate: float = 0.01
    #: API answers below 500 / all answers
    api_availability: float = 0.999
    #: p95 of API request time, seconds
    api_latency_p95_seconds: float = 0.5
    #: webhook jobs delivered / (delivered + failed)
    webhook_success_rate: float = 0.99
    #: calls with a frames-dropped, underrun or one-way-audio event / calls active
    audio_warning_rate: float = 0.05
    #: width of the at-risk band, a fraction of the target (or of the error budget for ratios)
    at_risk_fraction: float = 0.1

    def __post_init__(self) -> None:
        for name in ("turn_latency_p95_seconds", "api_latency_p95_seconds"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"observe.slo.{name}: must be a positive number of seconds")
        for name in (
            "pipeline_error_rate",
            "api_availability",
            "webhook_success_rate",
            "audio_warning_rate",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"observe.slo.{name}: must be a ratio between 0 and 1")
        if not 0 <= self.at_risk_fraction < 1:
            raise ConfigError("observe.slo.at_risk_fraction: must be at least 0 and below 1")


@dataclasses.dataclass(frozen=True)
class ObserveSettings:
    #: serve ``GET /analytics/summary`` (404 when off)
    analytics_enabled: bool = False
    #: the YAML rate card pricing calls (docs/rate-card.example.yaml); empty: every price reported missing
    rate_card_path: str = ""
    #: serve ``GET /metrics`` without credentials
    metrics_public: bool = False
    slo: SloSettings = dataclasses.field(default_factory=SloSettings)


@dataclasses.dataclass(frozen=True)
class WebhooksSettings:
    """Durable delivery of server messages (see docs/webhooks.md)."""

    #: run the delivery workers in this process
    enabled: bool = True
    #: concurrent requests
    workers: int = 8
    poll_interval: float = 0.2
    connect_timeout: float = 5.0
    #: per attempt when a target sets no timeoutSeconds
    default_timeout: float = 20.0
    max_attempts: int = 8
    #: exponential backoff with jitter: base * 2**attempt, capped
    backoff_base: float = 2.0
    backoff_cap: float = 600.0
    lease_seconds: float = 60.0
    max_redirects: int = 3
    #: outbound URL policy: CIDRs, addresses or host names (``*.example.com``); link-local and cloud metadata
    #: addresses are always refused unless allowed here
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    #: also refuse private ranges (10/8, 172.16/12, 192.168/16, loopback, ...)
    deny_private: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1 or self.max_attempts < 1:
            raise ConfigError("webhooks.workers/max_attempts: must be at least 1")
        if not 0 < self.poll_interval <= 60:
            raise ConfigError("webhooks.poll_interval: must be between 0 and 60 seconds")


@dataclasses.dataclass(frozen=True)
class MediaSettings:
    """The voice pipeline on live calls and the media WebSocket servers."""

    #: build the voice pipeline (embedded offline providers by default) for every answered call
    pipeline_enabled: bool = True
    #: web-call transport (``/call/<id>/ws?token=``)
    webcall_host: str = "127.0.0.1"
    webcall_port: int = 8086
    #: live listen (``/call/<id>/listen?token=``)
    listen_host: str = "127.0.0.1"
    listen_port: int = 8087
    #: the ws:// or wss:// base clients use for both (behind a proxy); empty: each server's address
    public_ws_url: str = ""
    #: load the embedded whisper model at start (in the background)
    warm_stt: bool = True
    #: how often one greenlet reads every call's fork socket (ms): longer batches more calls per
    #: wake-up (less CPU per frame), shorter hands audio on sooner
    fork_read_interval_ms: float = 5.0
    #: who writes call recordings: "process" (a child process: mixing and file writes never share
    #: the hub's GIL) or "thread" (a thread of this process)
    recording_writer: str = "process"

    def __post_init__(self) -> None:
        if not 0 < self.fork_read_interval_ms <= 50:
            raise ConfigError("media.fork_read_interval_ms: must be above 0 and at most 50")
        if self.recording_writer not in ("process", "thread"):
            raise ConfigError('media.recording_writer: must be "process" or "thread"')


@dataclasses.dataclass(frozen=True)
class Settings:
    #: directory for the SQLite database, files, recordings, captures and the secret key
    data_dir: str = "./var"
    #: the org id every resource belongs to on a single-tenant install
    org_id: str = "00000000-0000-4000-8000-000000000000"
    #: name of this node (calls record their owner)
    node_id: str = "node-1"
    database: DatabaseSettings = dataclasses.field(default_factory=DatabaseSettings)
    http: HttpSettings = dataclasses.field(default_factory=HttpSettings)
    auth: AuthSettings = dataclasses.field(default_factory=AuthSettings)
    secrets: SecretsSettings = dataclasses.field(default_factory=SecretsSettings)
    logging: LoggingSettings = dataclasses.field(default_factory=LoggingSettings)
    freeswitch: FreeswitchSettings = dataclasses.field(default_factory=FreeswitchSettings)
    calls: CallsSettings = dataclasses.field(default_factory=CallsSettings)
    observe: ObserveSettings = dataclasses.field(default_factory=ObserveSettings)
    webhooks: WebhooksSettings = dataclasses.field(default_factory=WebhooksSettings)
    media: MediaSettings = dataclasses.field(default_factory=MediaSettings)
    #: per-call SIP/RTP capture (extra ``pcap``); files in :attr:`pcap_dir`
    capture: CaptureSettings = dataclasses.field(default_factory=CaptureSettings)

    # -- derived values -------------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.data_path / 'esl-controller.db').as_posix()}"

    @property
    def secret_key_path(self) -> Path:
        return (
            Path(self.secrets.key_file) if self.secrets.key_file else self.data_path / "secret.key"
        )

    @property
    def pcap_dir(self) -> Path:
        """Where per-call captures are written (``<data_dir>/pcap/<call_id>.pcap``)."""
        return self.data_path / "pcap"

    @property
    def public_url(self) -> str:
        if self.http.public_url:
            return self.http.public_url.rstrip("/")
        host = "127.0.0.1" if self.http.host in ("0.0.0.0", "::", "") else self.http.host
        return f"http://{host}:{self.http.port}"


# -- parsing ------------------------------------------------------------------------------------


def _coerce(value: Any, tp: Any, key: str, from_env: bool) -> Any:
    """Check or convert one value against a field type; raise ConfigError naming the key."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return _build(tp, value, key + ".", from_env)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, from_env)
    if origin is tuple:
        if from_env and isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list")
        (inner, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, inner, f"{key}[{i}]", from_env) for i, v in enumerate(value))
    if tp is bool:
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if from_env and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        if isinstance(value, int | float):
            return float(value)
        if from_env and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected a string, got {type(value).__name__}")
    raise ConfigError(f"{key}: unsupported type {tp!r}")  # pragma: no cover - programming error


def _build(cls: type, data: Mapping[str, Any], prefix: str = "", from_env: bool = False) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown configuration key")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], prefix + name, from_env)
    return cls(**kwargs)


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _env_tree(environ: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_PATH:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if not all(path):
            raise ConfigError(f"{name}: malformed environment override")
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: conflicts with another override")
        node[path[-1]] = value
    return tree


def _validate(settings: Settings) -> None:
    level = settings.logging.level.upper()
    if level not in ("TRACE", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise ConfigError(f"logging.level: unknown level {settings.logging.level!r}")
    for key, port in (
        ("http.port", settings.http.port),
        ("freeswitch.port", settings.freeswitch.port),
        ("freeswitch.outbound_port", settings.freeswitch.outbound_port),
        ("freeswitch.fork_port", settings.freeswitch.fork_port),
    ):
        if not 0 <= port <= 65535:
            raise ConfigError(f"{key}: port out of range: {port}")
    url = settings.database.url
    if url and url.split(":", 1)[0] not in (
        "sqlite",
        "postgres",
        "postgresql",
        "postgresext",
        "postgresqlext",
    ):
        raise ConfigError("database.url: expected a sqlite:/// or postgresql:// URL")
    if settings.http.max_body_bytes <= 0 or settings.http.max_file_bytes <= 0:
        raise ConfigError("http.max_body_bytes/max_file_bytes: must be positive")
    _validate_capture(settings.capture)


def _validate_capture(c: CaptureSettings) -> None:
    for i, port in enumerate(c.sip_ports):
        if not 0 < port <= 65535:
            raise ConfigError(f"capture.sip_ports[{i}]: port out of range: {port}")
    if not c.sip_ports:
        raise ConfigError("capture.sip_ports: at least one SIP port is needed")
    if c.max_bytes <= 0 or c.max_seconds <= 0:
        raise ConfigError("capture.max_bytes/max_seconds: must be positive")
    if c.max_concurrent < 1 or c.max_files < 1:
        raise ConfigError("capture.max_concurrent/max_files: must be at least 1")
    if c.min_free_bytes < 0:
        raise ConfigError("capture.min_free_bytes: must not be negative")
    if c.start_timeout <= 0 or c.command_timeout <= 0:
        raise ConfigError("capture.start_timeout/command_timeout: must be positive")


def load_settings(
    path: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the effective settings: defaults < YAML file < environment < ``overrides`` (flags)."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(ENV_CONFIG_PATH) or None
    data: dict[str, Any] = {}
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"config file {path}: the top level must be a mapping")
        data = dict(loaded)
    # Each layer is validated on its own so that an error names where the bad value came from.
    _build(Settings, data)
    env = _env_tree(environ)
    try:
        _build(Settings, env, from_env=True)
    except ConfigError as exc:
        raise ConfigError(f"environment {ENV_PREFIX}…: {exc}") from exc
    merged = _merge(data, env)
    if overrides:
        merged = _merge(merged, overrides)
    settings = _build(Settings, merged, from_env=True)
    _validate(settings)
    return settings


def _mask(key: str, value: Any) -> Any:
    if isinstance(value, str) and value and key.rsplit(".", 1)[-1] in SECRET_KEYS:
        return "***"
    if isinstance(value, str) and "://" in value and "@" in value:
        # database URLs may carry a password
        scheme, rest = value.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        if ":" in cred:
            return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return value


def settings_as_dict(settings: Any, masked: bool = True, prefix: str = "") -> dict[str, Any]:
    """The settings as plain data (for ``config show``), secrets masked."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = settings_as_dict(value, masked, prefix + f.name + ".")
        else:
            if isinstance(value, tuple):
                value = list(value)
            out[f.name] = _mask(prefix + f.name, value) if masked else value
    return out
