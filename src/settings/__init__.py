"""Configuration from the environment, validated once at start (one clear line per bad variable)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from application.deliver_webhooks import DEFAULT_RETRY_SECONDS
from domain.callbacks import secret_key
from infrastructure.key_fetch import DISCOVERY_PATH, key_url_problem
from infrastructure.object_store import AWS_VARIABLES

T = TypeVar("T", int, float)

PREFIX = "REPORTGEN_"
SQL_SCHEMES = ("postgresql+asyncpg", "sqlite+aiosqlite")
DEFAULT_VAR_DIR = Path("var")


class SettingsError(Exception):
    """Invalid configuration; `problems` has one line per offending variable."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    database_url: str = ""
    """SQLAlchemy URL of the service's database; empty means an SQLite file under `var_dir` (embedded mode)."""
    redis_url: str | None = None
    """`redis://...` to use arq; None runs jobs in-process (embedded mode)."""
    reporting_database_url: str | None = None
    """Where report queries run; None means the service's own database (and role: see README, Security)."""
    allow_privileged_reports: bool = False
    """Run reports even when their PostgreSQL role may do more than read (a superuser, a member of
    pg_read_server_files and the like, a reader of reportgen's own tables); logged as a warning at every start."""
    jwt_secret: str | None = None
    """HS256 secret (at least 32 characters). In embedded mode one is generated under `var_dir` if unset."""
    jwt_public_key: str | None = None
    """PEM text of an RSA or EC public key, for RS256/ES256 tokens."""
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_jwks_url: str | None = None
    """The identity provider's JWKS (https; plain http only from a loopback host): RS256/ES256 keys, selected by the
    token's `kid`, cached by their `Cache-Control` (api.jwks). Beside `jwt_secret` (HS256) or `jwt_public_key` (an
    RS256/ES256 token whose `kid` the set does not name, or without one, is the public key's)."""
    jwt_oidc_discovery: bool = False
    """Read the JWKS URL from `<jwt_issuer>/.well-known/openid-configuration` instead of `jwt_jwks_url`."""
    artifact_dir: Path = DEFAULT_VAR_DIR / "artifacts"
    """Where finished report files are kept when `artifact_url` is unset (a local directory)."""
    artifact_url: str | None = None
    """`s3://bucket[/prefix]`: keep finished report files in S3-compatible object storage (infrastructure.object_store)
    instead of `artifact_dir`, configured by the standard AWS variables (`aws_env`)."""
    aws_env: tuple[tuple[str, str], ...] = ()
    """The standard AWS variables of the environment (credentials, region, endpoint), for the object store."""
    inline_artifact_max_bytes: int = 262_144
    """On PostgreSQL, artifacts up to this size are kept as rows of the service database instead of in the
    artifact directory or bucket (infrastructure.persistence.inline_artifacts); 0 keeps every artifact there."""
    result_delivery: str = "stream"
    """`stream`: downloads go through the API. `redirect` (object storage only): a download is a 303 See Other to a
    presigned URL of the object, valid `result_link_seconds`."""
    result_link_seconds: int = 300
    """How long a presigned download URL stays valid (never past the result's expiry)."""
    var_dir: Path = DEFAULT_VAR_DIR
    report_timeout_seconds: float = 300.0
    max_attempts: int = 3
    """How many times a job is tried when it fails for a transient reason (the database went away)."""
    worker_concurrency: int = 10
    """Jobs one worker process (or the embedded worker) runs at once."""
    result_ttl_seconds: int = 86_400
    """How long a Succeeded job's artifact is kept before the retention sweep deletes it."""
    pdf_max_rows: int = 10_000
    """Rows a PDF result shows at most; past them it says how many there were and suggests xlsx or csv."""
    max_active_jobs_per_user: int = 10
    """Queued + Running jobs one user may have unless an admin set a limit of their own; over it, generate answers
    429. 0: no limit."""
    lease_seconds: float = 15.0
    """A Running job whose worker has not renewed its lease for this long is presumed lost and run again."""
    reconcile_interval_seconds: int = 5
    """How often lost queue entries and lost workers are looked for."""
    sweep_interval_seconds: int = 60
    """How often expired artifacts are deleted."""
    shutdown_grace_seconds: int = 30
    """On SIGTERM a worker lets running jobs finish this long, then hands them back to the queue."""
    queue_name: str = "reportgen:queue"
    worker_metrics_port: int = 9464
    """TCP port of a `reportgen worker`'s own Prometheus `/metrics` endpoint (all interfaces); 0 disables it."""
    poll_after_seconds: int = 2
    """The `Retry-After` hint on 202 and on the status of unfinished jobs."""
    max_body_bytes: int = 1_048_576
    request_body_timeout_seconds: float = 30.0
    """How long a request body may take to arrive whole, from the first read; a slower one is answered 408."""
    database_pool_size: int = 15
    """Connections each process keeps open to the service's database, and never more: requests beyond it wait for a
    free one: under load, opening and closing connections beyond the pool costs more than the wait."""
    database_pool_timeout_seconds: float = 10.0
    """How long a request waits for a free pooled connection before it answers 503 (`database_pool`)."""
    database_lock_timeout_seconds: float = 5.0
    """PostgreSQL: how long a statement of the service (never a report's) waits for a lock, advisory locks included,
    before it answers 503 (`database_timeout`): something else holding a lock cannot make requests hang."""
    database_statement_timeout_seconds: float = 30.0
    """PostgreSQL: how long a statement of the service (never a report's) may run, and a transaction of the service
    may stay idle, before the server ends it (503, `database_timeout`)."""
    webhook_secret: tuple[str, ...] = ()
    """Standard Webhooks secrets (`whsec_` then base64; space-separated in the variable) that sign every webhook,
    one signature each: give the new and the old one while rotating. None: a `callbackUrl` is refused (422)."""
    webhook_allowed_hosts: tuple[str, ...] = ()
    """Host names (space- or comma-separated) that webhooks may reach over plain `http`, and whose addresses may be
    private or loopback (a receiver inside the network). Other hosts: `https` to public addresses only."""
    webhook_retry_seconds: tuple[float, ...] = DEFAULT_RETRY_SECONDS
    """The waits (space-separated seconds) after each failed webhook attempt before the next; past the last,
    the delivery fails. Each is stretched or shrunk by up to 10 % at random."""
    log_format: str = "auto"
    """`json`, `console`, or `auto` (console on a terminal in embedded mode, JSON otherwise)."""
    log_level: str = "INFO"
    demo: bool | None = None
    """Seed demo data and reports; None means: in embedded mode only."""

    @property
    def embedded(self) -> bool:
        """One process: in-process queue and worker (no Redis)."""
        return self.redis_url is None

    @property
    def uses_jwks(self) -> bool:
        """Whether tokens may be verified with the identity provider's keys (a JWKS URL, or OIDC discovery)."""
        return self.jwt_jwks_url is not None or self.jwt_oidc_discovery

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{(self.var_dir / 'reportgen.db').resolve()}"

    @property
    def seeds_demo(self) -> bool:
        return self.embedded if self.demo is None else self.demo

    @property
    def dev_secret_file(self) -> Path:
        return self.var_dir / "dev-jwt-secret"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        reader = _Reader(env)
        settings = cls(
            database_url=reader.url("DATABASE_URL", SQL_SCHEMES) or reader.default("DATABASE_URL"),
            redis_url=reader.url("REDIS_URL", ("redis", "rediss", "unix")),
            reporting_database_url=reader.url("REPORTING_DATABASE_URL", SQL_SCHEMES),
            allow_privileged_reports=reader.flag("ALLOW_PRIVILEGED_REPORTS") or False,
            jwt_secret=reader.secret("JWT_SECRET"),
            jwt_public_key=reader.public_key("JWT_PUBLIC_KEY"),
            jwt_issuer=reader.text("JWT_ISSUER"),
            jwt_audience=reader.text("JWT_AUDIENCE"),
            jwt_jwks_url=reader.key_url("JWT_JWKS_URL"),
            jwt_oidc_discovery=reader.flag("JWT_OIDC_DISCOVERY") or False,
            artifact_dir=reader.path("ARTIFACT_DIR"),
            artifact_url=reader.bucket_url("ARTIFACT_URL"),
            aws_env=tuple((name, value) for name, value in sorted(env.items()) if name in AWS_VARIABLES and value),
            inline_artifact_max_bytes=reader.number("INLINE_ARTIFACT_MAX_BYTES", int, 0, 16 * 1_048_576),
            result_delivery=reader.choice("RESULT_DELIVERY", ("stream", "redirect")),
            result_link_seconds=reader.number("RESULT_LINK_SECONDS", int, 1, 7 * 86_400),
            var_dir=reader.path("VAR_DIR"),
            report_timeout_seconds=reader.number("REPORT_TIMEOUT_SECONDS", float, 0.1, 86_400),
            max_attempts=reader.number("MAX_ATTEMPTS", int, 1, 100),
            worker_concurrency=reader.number("WORKER_CONCURRENCY", int, 1, 1000),
            result_ttl_seconds=reader.number("RESULT_TTL_SECONDS", int, 1, 365 * 86_400),
            max_active_jobs_per_user=reader.number("MAX_ACTIVE_JOBS_PER_USER", int, 0, 1_000_000),
            pdf_max_rows=reader.number("PDF_MAX_ROWS", int, 1, 1_000_000),
            lease_seconds=reader.number("LEASE_SECONDS", float, 1.0, 3600.0),
            reconcile_interval_seconds=reader.period("RECONCILE_INTERVAL_SECONDS"),
            sweep_interval_seconds=reader.period("SWEEP_INTERVAL_SECONDS"),
            shutdown_grace_seconds=reader.number("SHUTDOWN_GRACE_SECONDS", int, 0, 3600),
            queue_name=reader.text("QUEUE_NAME") or reader.default("QUEUE_NAME"),
            worker_metrics_port=reader.number("WORKER_METRICS_PORT", int, 0, 65_535),
            poll_after_seconds=reader.number("POLL_AFTER_SECONDS", int, 1, 3600),
            max_body_bytes=reader.number("MAX_BODY_BYTES", int, 1024, 100 * 1_048_576),
            request_body_timeout_seconds=reader.number("REQUEST_BODY_TIMEOUT_SECONDS", float, 0.1, 3600.0),
            database_pool_size=reader.number("DATABASE_POOL_SIZE", int, 1, 1000),
            database_pool_timeout_seconds=reader.number("DATABASE_POOL_TIMEOUT_SECONDS", float, 0.1, 600.0),
            database_lock_timeout_seconds=reader.number("DATABASE_LOCK_TIMEOUT_SECONDS", float, 0.1, 600.0),
            database_statement_timeout_seconds=reader.number("DATABASE_STATEMENT_TIMEOUT_SECONDS", float, 1.0, 3600.0),
            webhook_secret=reader.webhook_secrets("WEBHOOK_SECRET"),
            webhook_allowed_hosts=tuple(host.lower() for host in reader.words("WEBHOOK_ALLOWED_HOSTS")),
            webhook_retry_seconds=reader.delays("WEBHOOK_RETRY_SECONDS"),
            log_format=reader.choice("LOG_FORMAT", ("auto", "json", "console")),
            log_level=reader.choice("LOG_LEVEL", ("DEBUG", "INFO", "WARNING", "ERROR")),
            demo=reader.flag("DEMO"),
        )
        reader.problems += _key_problems(settings)
        if settings.result_delivery == "redirect" and settings.artifact_url is None:
            reader.problems.append(
                f"{PREFIX}RESULT_DELIVERY: redirect needs {PREFIX}ARTIFACT_URL (object storage gives the download URLs)"
            )
        if reader.problems:
            raise SettingsError(reader.problems)
        return settings


def _key_problems(settings: Settings) -> list[str]:
    """Which keys verify tokens must be plain: some key outside the dev mode, one source of asymmetric keys."""
    jwks, discovery = f"{PREFIX}JWT_JWKS_URL", f"{PREFIX}JWT_OIDC_DISCOVERY"
    problems = []
    if not settings.embedded and not (settings.jwt_secret or settings.jwt_public_key or settings.uses_jwks):
        problems.append(
            f"{PREFIX}JWT_SECRET, {PREFIX}JWT_PUBLIC_KEY or {jwks}: one is required when "
            f"{PREFIX}REDIS_URL is set (only the embedded dev mode generates a secret)"
        )
    if settings.jwt_jwks_url and settings.jwt_oidc_discovery:
        problems.append(f"{jwks} and {discovery}: set one (the keys come from that URL or from the issuer's discovery)")
    if settings.jwt_oidc_discovery:
        problem = key_url_problem(settings.jwt_issuer) if settings.jwt_issuer else "unset"
        if problem is not None:
            problems.append(f"{PREFIX}JWT_ISSUER: {problem}; {discovery} fetches <issuer>{DISCOVERY_PATH}")
    return problems


class _Reader:
    """Reads `REPORTGEN_<NAME>` into the Settings field `<name>`; an unset variable takes the field's default, which
    is stated once, on the field. The readers that answer None for "unset" (text, url, secret, public_key, flag)
    serve fields whose default is None, or are followed by `or reader.default(...)`."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []
        self._defaults = {field.name: field.default for field in fields(Settings)}

    def default(self, name: str) -> Any:
        return self._defaults[name.lower()]

    def path(self, name: str) -> Path:
        value = self.text(name)
        return Path(value) if value is not None else Path(self.default(name))

    def text(self, name: str) -> str | None:
        value = self._env.get(PREFIX + name, "").strip()
        return value or None

    def _bad(self, name: str, why: str) -> None:
        self.problems.append(f"{PREFIX}{name}: {why}")

    def url(self, name: str, schemes: tuple[str, ...]) -> str | None:
        """None when unset or invalid."""
        value = self.text(name)
        if value is None:
            return None
        try:
            parts = urlsplit(value)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in schemes:
            self._bad(name, f"not a valid URL; expected one starting with {' or '.join(s + '://' for s in schemes)}")
            return None
        return value

    def bucket_url(self, name: str) -> str | None:
        """`s3://bucket[/prefix]`; None when unset or invalid."""
        value = self.url(name, ("s3",))
        if value is not None and not urlsplit(value).netloc:
            self._bad(name, "names no bucket; expected s3://bucket or s3://bucket/prefix")
            return None
        return value

    def key_url(self, name: str) -> str | None:
        """A URL keys may be fetched from (infrastructure.key_fetch); None when unset or not one."""
        value = self.text(name)
        problem = key_url_problem(value) if value is not None else None
        if problem is not None:
            self._bad(name, problem)
            return None
        return value

    def secret(self, name: str) -> str | None:
        value = self.text(name)
        if value is not None and len(value) < 32:
            self._bad(name, "too short; use at least 32 random characters")
        return value

    def public_key(self, name: str) -> str | None:
        value = self.text(name)
        if value is None or value.startswith("-----BEGIN"):
            return value
        try:
            pem = Path(value).read_text(encoding="utf-8")
        except OSError as exc:
            self._bad(name, f"neither PEM text nor a readable file ({exc.strerror})")
            return None
        if "-----BEGIN" not in pem:
            self._bad(name, f"{value} does not hold a PEM public key")
            return None
        return pem

    def number(self, name: str, kind: Callable[[str], T], low: T, high: T) -> T:
        default: T = self.default(name)
        value = self.text(name)
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            self._bad(name, f"{value!r} is not a number")
            return default
        if not low <= number <= high:
            self._bad(name, f"{value} is out of range ({low} to {high})")
            return default
        return number

    def period(self, name: str) -> int:
        """A period that a clock-aligned schedule (arq cron) can keep evenly: it divides a minute, an hour or a day."""
        default: int = self.default(name)
        seconds = self.number(name, int, 1, 86_400)
        unit = 1 if seconds < 60 else 60 if seconds < 3600 else 3600
        if seconds % unit or (60 if unit == 1 else 3600 if unit == 60 else 86_400) % seconds:
            self._bad(name, f"{seconds} does not divide a minute, an hour or a day evenly (e.g. 5, 15, 60, 300)")
            return default
        return seconds

    def words(self, name: str) -> tuple[str, ...]:
        """Values separated by spaces or commas; () when unset."""
        return tuple((self.text(name) or "").replace(",", " ").split())

    def webhook_secrets(self, name: str) -> tuple[str, ...]:
        secrets = self.words(name)
        for position, secret in enumerate(secrets, start=1):
            try:
                secret_key(secret)
            except ValueError as exc:
                self._bad(name, f"secret {position}: {exc}")
        return secrets

    def delays(self, name: str) -> tuple[float, ...]:
        default: tuple[float, ...] = self.default(name)
        words = self.words(name)
        if not words:
            return default
        try:
            delays = tuple(float(word) for word in words)
        except ValueError:
            self._bad(name, f"{' '.join(words)!r} is not a list of seconds")
            return default
        if len(delays) > 20 or not all(0 <= delay <= 86_400 for delay in delays):
            self._bad(name, "expected at most 20 waits, each from 0 to 86400 seconds")
            return default
        return delays

    def choice(self, name: str, options: tuple[str, ...]) -> str:
        default: str = self.default(name)
        value = self.text(name)
        if value is None:
            return default
        if value.upper() in options:
            return value.upper()
        if value.lower() in options:
            return value.lower()
        self._bad(name, f"{value!r} is not one of {', '.join(options)}")
        return default

    def flag(self, name: str) -> bool | None:
        value = self.text(name)
        if value is None:
            return None
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off"):
            return False
        self._bad(name, f"{value!r} is not a boolean (true/false)")
        return None
