"""One registry of every setting: name, default and help.

Like datasette's ``SETTINGS`` list, this single table drives ``smsguard settings``,
``docs/configuration.md`` (a test fails when a setting is not documented there) and
the values every component reads. Each setting is read from the environment
variable of the same name.

>>> s = Settings.from_env({"SMSGUARD_BATCH_SIZE": "64"})
>>> s.batch_size, s.kafka_bootstrap
(64, 'localhost:9092')
>>> Settings.from_env({"SMSGUARD_BATCH_SIZE": "lots"})
Traceback (most recent call last):
...
detector.errors.ConfigError: SMSGUARD_BATCH_SIZE: expected int, got 'lots'
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from detector.errors import ConfigError

DEFAULT_SECRET = "smsguard-dev-secret-change-me"


@dataclass(frozen=True)
class Setting:
    name: str          # environment variable
    default: Any
    help: str
    # bounds of a number (inclusive): a value the code would misread (a batch of -1 processes nothing,
    # a TTL of 0 remembers nothing) stops the process at start instead
    minimum: float | None = None
    maximum: float | None = None
    # the only values a text setting may take (None: any): "prod" for "production" must not run as development
    choices: tuple[str, ...] | None = None

    @property
    def attr(self) -> str:
        return self.name.removeprefix("SMSGUARD_").lower()


SETTINGS: list[Setting] = [
    Setting("SMSGUARD_ENV", "development",
            "development | production. In production SMSGUARD_RECIPIENT_SECRET (the recipient HMAC secret) must be "
            "set to 16+ characters; operator tokens stay optional: without them the dashboard is read-only "
            "(operator actions are refused).", choices=("development", "production")),
    Setting("SMSGUARD_KAFKA_BOOTSTRAP", "localhost:9092", "Kafka bootstrap servers, comma separated."),
    Setting("SMSGUARD_REDIS_URL", "redis://localhost:6379/0", "Redis URL for port signals, port states and the gateway buckets. TLS with a password: "
            "rediss://:PASSWORD@HOST:6379/0?ssl_ca_certs=/path/ca.pem&ssl_cert_reqs=required (an ACL user goes "
            "before the colon); logs and errors never show the password."),
    Setting("SMSGUARD_REDIS_CLUSTER", False,
            "true: SMSGUARD_REDIS_URL names one node of a Redis Cluster (database 0), and workers, dashboard, gateways "
            "and CLIs use a cluster client. A Lua script may only touch keys of one slot, so the state store then "
            "sends one script per op and one command per port instead of one script per micro-batch: 6-9x the "
            "worker's client CPU per op (docs/configuration.md, Redis Cluster). Off: one standalone Redis."),
    Setting("SMSGUARD_APP_ID", "smsguard-detector", "Kafka consumer group / faust app id of the detector workers."),
    Setting("SMSGUARD_TOPIC_PREFIX", "", "Prefix added to every topic name (lets tests share one broker)."),
    Setting("SMSGUARD_PARTITIONS", 4, "Partitions of the input topics when smsguard creates them.",
            minimum=1),
    Setting("SMSGUARD_RECIPIENT_SECRET", DEFAULT_SECRET,
            "HMAC-SHA256 key that replaces recipients' MSISDNs at ingress. Required (not the default) when SMSGUARD_ENV=production."),
    Setting("SMSGUARD_OPERATOR_TOKENS", "",
            "Comma-separated operator tokens as 'operator_id:token' (16+ characters, one per operator). Without one the dashboard is read-only."),
    Setting("SMSGUARD_MODELS_DIR", "models", "Model registry directory (artifacts, manifests, the promoted pointer)."),
    Setting("SMSGUARD_SHUTDOWN_TIMEOUT_S", 30.0,
            "Longest a worker may take to stop after SIGTERM/SIGINT before it exits anyway (code 1): with the broker "
            "gone, faust's consumer can wait for it forever. Nothing is lost: batches are acknowledged only once "
            "delivered, so a batch in flight is read again.", minimum=1),
    Setting("SMSGUARD_MODEL_RELOAD_S", 2.0, "How often a worker checks the registry for a promote/rollback (seconds).",
            minimum=0.1),
    Setting("SMSGUARD_POLICY_FILE", "", "Policy config (YAML). Empty: the packaged default detector/policy.default.yaml."),
    Setting("SMSGUARD_BATCH_SIZE", 500, "Most messages a worker scores in one micro-batch.", minimum=1),
    Setting("SMSGUARD_BATCH_WINDOW_S", 0.05, "Longest a worker waits to fill a micro-batch (seconds).",
            minimum=0),
    Setting("SMSGUARD_FETCH_MAX_WAIT_MS", 100,
            "Longest the broker may hold a worker's fetch waiting for data (ms): at low rates a floor under "
            "latency (faust's fixed value is 1500; tansu holds an idle fetch for much of the wait).", minimum=0),
    Setting("SMSGUARD_SCORE_CACHE_SIZE", 100_000, "Entries in the template score cache (0 disables it).",
            minimum=0),
    Setting("SMSGUARD_DEDUP_TTL_S", 3_600, "How long a msg_id is remembered so it is decided and counted once (seconds). "
            "Redeliveries after a crash or rebalance start from offsets committed seconds earlier, so an hour is ample; "
            "Redis holds one ~180-byte key per message for this long (0.65 GB at 1,000 msgs/s). Raise it to the "
            "longest window you may deliberately reprocess (an offset reset) without counting twice.", minimum=1),
    Setting("SMSGUARD_DECISION_REPLAY_TTL_S", 300,
            "How long a decision is kept so a batch redelivered after a crash re-emits it identically (seconds). "
            "Offsets are committed seconds after deciding, so minutes are ample; Redis holds this many seconds of "
            "decisions (~400 bytes each).", minimum=0),
    Setting("SMSGUARD_MAX_CONTENT_CHARS", 2_000, "Longer contents are rejected to the dead-letter topic.",
            minimum=1),
    Setting("SMSGUARD_MAX_EVENT_BYTES", 65_536, "Larger raw events are rejected to the dead-letter topic.",
            minimum=1),
    Setting("SMSGUARD_MAX_CLOCK_SKEW_S", 86_400,
            "Events stamped further than this in the future of the worker's clock are rejected.", minimum=0),
    Setting("SMSGUARD_MAX_EVENT_AGE_S", 30 * 86_400, "Events older than this (against the worker's clock) are rejected.",
            minimum=1),
    Setting("SMSGUARD_DEFAULT_TZ_OFFSET_H", 8, "Recipient-local UTC offset for quiet hours when unknown (China: +8).",
            minimum=-12, maximum=14),
    Setting("SMSGUARD_BROKER_SESSION_TIMEOUT_S", 10.0,
            "Kafka consumer session timeout; keep low in dev and tests: the dev broker (tansu) holds a group's first "
            "join for half of it.",
            minimum=1),
    Setting("SMSGUARD_BROKER_REBALANCE_TIMEOUT_S", 10.0, "Kafka rebalance timeout: how long a member may take to rejoin during a rebalance.",
            minimum=1),
    Setting("SMSGUARD_WORKER_WEB_PORT", 6066, "Port of a worker's web server (/metrics, health).",
            minimum=0, maximum=65_535),
    Setting("SMSGUARD_DASHBOARD_HOST", "127.0.0.1", "Address the dashboard listens on."),
    Setting("SMSGUARD_DASHBOARD_PORT", 8080, "Port the dashboard listens on.", minimum=1, maximum=65_535),
    Setting("SMSGUARD_AUDIT_LOG", "smsguard-audit.jsonl", "Append-only audit log of operator actions (JSON lines)."),
    Setting("SMSGUARD_LOG_LEVEL", "INFO", "Log level (DEBUG, INFO, WARNING, ERROR)."),
    Setting("SMSGUARD_LOG_FORMAT", "json", "json (structured, one object a line) or text."),
    Setting("SMSGUARD_DATA_DIR", "../shared/data/sms_zh", "Where the labeled SMS data lives (for the simulator, training, benchmarks)."),
]

_BY_NAME = {s.name: s for s in SETTINGS}


def _coerce(setting: Setting, raw: str) -> Any:
    kind = type(setting.default)
    if kind is str:
        if setting.choices is not None and raw not in setting.choices:
            raise ConfigError(f"{setting.name}: expected one of {', '.join(setting.choices)}, got {raw!r}")
        return raw
    try:
        if kind is bool:
            return raw.strip().lower() in {"1", "true", "yes", "on"}
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{setting.name}: expected {kind.__name__}, got {raw!r}") from None
    if setting.minimum is not None and not value >= setting.minimum:      # "not >=": nan is refused too
        raise ConfigError(f"{setting.name}: must be at least {setting.minimum:g}, got {raw!r}")
    if setting.maximum is not None and not value <= setting.maximum:
        raise ConfigError(f"{setting.name}: must be at most {setting.maximum:g}, got {raw!r}")
    return value


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        env = os.environ if env is None else env
        values = {}
        for s in SETTINGS:
            values[s.attr] = _coerce(s, env[s.name]) if s.name in env else s.default
        for key, value in overrides.items():
            if key not in values:
                raise ConfigError(f"unknown setting {key!r}")
            values[key] = value
        return cls(values)

    def __getattr__(self, attr: str) -> Any:
        try:
            return self.values[attr]
        except KeyError:
            raise AttributeError(attr) from None

    def replace(self, **overrides: Any) -> "Settings":
        return Settings({**self.values, **overrides})

    def as_env(self) -> dict[str, str]:
        """The settings as environment variables, to hand to a child process."""
        return {s.name: str(self.values[s.attr]) for s in SETTINGS}

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    @property
    def models_path(self) -> Path:
        return Path(self.models_dir)

    def check_production(self) -> None:
        """Refuse to run in production on development defaults."""
        if self.env != "production":
            return
        if self.recipient_secret == DEFAULT_SECRET or len(self.recipient_secret.strip()) < 16:     # 16 spaces: no
            raise ConfigError("SMSGUARD_ENV=production needs SMSGUARD_RECIPIENT_SECRET set to a secret of 16+ characters")

    def operator_tokens(self) -> dict[str, str]:
        """token -> operator id."""
        tokens = {}
        for item in filter(None, (p.strip() for p in self.values["operator_tokens"].split(","))):
            operator, sep, token = item.partition(":")
            if not sep or not operator or not token:
                raise ConfigError("SMSGUARD_OPERATOR_TOKENS entries look like 'operator_id:token'")
            if token in tokens:     # one token, two operators: the audit log would name the wrong one
                raise ConfigError(f"SMSGUARD_OPERATOR_TOKENS: operators {tokens[token]!r} and {operator!r} share a token")
            if len(token) < 16:
                raise ConfigError(f"SMSGUARD_OPERATOR_TOKENS: {operator!r}'s token is shorter than 16 characters")
            tokens[token] = operator
        return tokens


def setting(name: str) -> Setting:
    return _BY_NAME[name]
