"""Settings, read from the environment and an optional ``.env`` (see ``.env.example``).

A missing or malformed value raises ``ImproperlyConfigured`` naming the setting;
``manage.py`` and ``asgi.py`` turn that into one clear line.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from dashboard.bridge.broker_url import BrokerUrlError, parse_broker_url

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(name: str, default: bool) -> bool:
    raw = env.str(name, default=str(default)).strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}: expected true or false, got {raw!r}")


def _number(name: str, default: float, *, minimum: float = 0, cast: type = int) -> float:
    raw = env.str(name, default=str(default))
    try:
        value = cast(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}: expected a number, got {raw!r}") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}: must be at least {minimum}, got {value}")
    return value


def _required(name: str) -> str:
    value = env.str(name, default="").strip()
    if not value:
        raise ImproperlyConfigured(f"{name}: not set (copy .env.example to .env and fill it in)")
    return value


SECRET_KEY = _required("SECRET_KEY")
DEBUG = _bool("DEBUG", False)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])

DATABASE_URL = env.str("DATABASE_URL", default="").strip() or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
if DATABASE_URL.split(":", 1)[0] not in environ.Env.DB_SCHEMES:
    raise ImproperlyConfigured(
        f"DATABASE_URL: unknown scheme {DATABASE_URL.split(':', 1)[0]!r} (use postgres:// or sqlite:///)"
    )
try:
    DATABASES = {"default": environ.Env.db_url_config(DATABASE_URL)}
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise ImproperlyConfigured(f"DATABASE_URL: not a database URL we know ({exc})") from None
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The bridge writes history while pages read; WAL and a busy timeout keep both moving.
    # In WAL mode, synchronous=NORMAL syncs at checkpoints, not at every commit: a crash of
    # the process loses nothing, a power cut the last commits (SQLite's documented advice).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    # The tests' database (tests/pytest_env.py): a file, so that the history writer's thread
    # and the test wait for each other's locks as in production, where an in-memory database
    # shared between threads answers "table is locked" at once.
    if _test_db := env.str("SQLITE_TEST_NAME", default="").strip():
        DATABASES["default"]["TEST"] = {"NAME": _test_db}

# --- MQTT -------------------------------------------------------------------------
MQTT_URL = env.str("MQTT_URL", default="").strip()
try:
    # None: no broker configured; `serve` then starts the embedded one.
    MQTT_BROKER = parse_broker_url(MQTT_URL) if MQTT_URL else None
except BrokerUrlError as exc:
    raise ImproperlyConfigured(f"MQTT_URL: {exc}") from None
MQTT_CA_FILE = env.str("MQTT_CA_FILE", default="").strip() or None
if MQTT_CA_FILE and not Path(MQTT_CA_FILE).is_file():
    raise ImproperlyConfigured(f"MQTT_CA_FILE: no such file {MQTT_CA_FILE!r}")
# Brokers that want a client certificate (mutual TLS): both PEM files, or neither.
MQTT_CLIENT_CERT = env.str("MQTT_CLIENT_CERT", default="").strip() or None
MQTT_CLIENT_KEY = env.str("MQTT_CLIENT_KEY", default="").strip() or None
for _name, _file in (("MQTT_CLIENT_CERT", MQTT_CLIENT_CERT), ("MQTT_CLIENT_KEY", MQTT_CLIENT_KEY)):
    if _file and not Path(_file).is_file():
        raise ImproperlyConfigured(f"{_name}: no such file {_file!r}")
if bool(MQTT_CLIENT_CERT) != bool(MQTT_CLIENT_KEY):
    raise ImproperlyConfigured("MQTT_CLIENT_CERT and MQTT_CLIENT_KEY: set both or neither")
MQTT_CLIENT_ID_PREFIX = env.str("MQTT_CLIENT_ID_PREFIX", default="gooee-dashboard").strip()
if not MQTT_CLIENT_ID_PREFIX or len(MQTT_CLIENT_ID_PREFIX) > 40:
    raise ImproperlyConfigured("MQTT_CLIENT_ID_PREFIX: must be 1 to 40 characters")
MQTT_KEEPALIVE = int(_number("MQTT_KEEPALIVE", 30, minimum=5))
MQTT_RECONNECT_MAX_SECONDS = _number("MQTT_RECONNECT_MAX_SECONDS", 30, minimum=1, cast=float)
MQTT_MAX_PAYLOAD_BYTES = int(_number("MQTT_MAX_PAYLOAD_BYTES", 256 * 1024, minimum=1024))
if MQTT_MAX_PAYLOAD_BYTES > 1024 * 1024:  # each one is parsed and kept in memory
    raise ImproperlyConfigured(
        f"MQTT_MAX_PAYLOAD_BYTES: at most {1024 * 1024}, got {MQTT_MAX_PAYLOAD_BYTES}"
    )

# --- The Gooee Cloud REST API (sync_inventory; README "Connect your Gooee account") ----
GOOEE_API_URL = env.str("GOOEE_API_URL", default="https://api.gooee.io").strip().rstrip("/")
if not GOOEE_API_URL.startswith(("https://", "http://")):
    raise ImproperlyConfigured(f"GOOEE_API_URL: expected an http(s):// URL, got {GOOEE_API_URL!r}")
# The broker contract's password is the User API Token: the same token reads the REST API.
GOOEE_API_TOKEN = env.str("GOOEE_API_TOKEN", default="").strip() or (
    MQTT_BROKER.password if MQTT_BROKER is not None else None
)
GOOEE_API_AUTH_SCHEME = env.str("GOOEE_API_AUTH_SCHEME", default="Bearer").strip()
if GOOEE_API_AUTH_SCHEME not in ("Bearer", "JWT"):
    raise ImproperlyConfigured(
        f"GOOEE_API_AUTH_SCHEME: Bearer or JWT (got {GOOEE_API_AUTH_SCHEME!r})"
    )
# How often a running bridge re-syncs the buildings it serves from the API; 0 turns it off.
GOOEE_SYNC_MINUTES = _number("GOOEE_SYNC_MINUTES", 60, minimum=0, cast=float)

# --- Live state and history --------------------------------------------------------
LIVE_COALESCE_MS = int(_number("LIVE_COALESCE_MS", 250, minimum=0))
STALE_AFTER_SECONDS = int(_number("STALE_AFTER_SECONDS", 900, minimum=1))
HISTORY_RETENTION_DAYS = int(_number("HISTORY_RETENTION_DAYS", 30, minimum=1))
# Per-minute and per-hour rollups of headcounts and numeric meta outlive the raw samples:
# charts and reports read them (dashboard/live/rollups.py); prune_history keeps each so long.
ROLLUP_MINUTE_DAYS = int(_number("ROLLUP_MINUTE_DAYS", 35, minimum=1))
ROLLUP_HOUR_DAYS = int(_number("ROLLUP_HOUR_DAYS", 730, minimum=1))
HISTORY_FLUSH_SECONDS = _number("HISTORY_FLUSH_SECONDS", 2, minimum=0.05, cast=float)
INVENTORY_POLL_SECONDS = _number("INVENTORY_POLL_SECONDS", 2, minimum=0.1, cast=float)
# Where the bridge writes history: "process" (a child process, the default: the writing's
# Python work stays off the MQTT sessions' event loop) or "thread" (needs no second process;
# what the tests use, whose database lives in memory).
HISTORY_WRITER = env.str("HISTORY_WRITER", default="process").strip()
if HISTORY_WRITER not in ("process", "thread"):
    raise ImproperlyConfigured(f"HISTORY_WRITER: process or thread (got {HISTORY_WRITER!r})")

# While the history writer works but is behind, stop reading the broker so that a flood
# waits there (QoS 1) instead of dropping readings. Only for a broker that queues what is
# unread without a small cap: Mosquitto drops past max_queued_messages (1,000 by default),
# and those are live values, lost silently. Off: past the buffer the oldest readings are
# dropped, counted and logged, and live values stay current.
HISTORY_HOLD = _bool("HISTORY_HOLD", False)

REDIS_URL = env.str("REDIS_URL", default="").strip() or None
# With Redis, bridge workers share buildings; a dead worker's buildings move after this long.
BRIDGE_LEASE_SECONDS = _number("BRIDGE_LEASE_SECONDS", 10, minimum=1, cast=float)
# Operator actions: default transition, how long to wait for the broker's PUBACK, rate limit.
ACTION_TRANSITION_SECONDS = int(_number("ACTION_TRANSITION_SECONDS", 5, minimum=0))
ACTION_PUBACK_TIMEOUT_SECONDS = _number("ACTION_PUBACK_TIMEOUT_SECONDS", 5, minimum=0.1, cast=float)
ACTION_RATE_PER_MINUTE = int(_number("ACTION_RATE_PER_MINUTE", 30, minimum=1))
ACTION_REFUSALS_LOGGED_PER_MINUTE = int(_number("ACTION_REFUSALS_LOGGED_PER_MINUTE", 10, minimum=1))
# Seconds past an action's transition time its lamps have to report what it asked for.
ACTION_CONFIRM_GRACE_SECONDS = _number("ACTION_CONFIRM_GRACE_SECONDS", 10, minimum=0, cast=float)
# How far a place's head_count may be from headcount_in - headcount_out before its card warns.
HEADCOUNT_TOLERANCE = int(_number("HEADCOUNT_TOLERANCE", 2, minimum=0))
# A new fault alarm at or above this priority (0-255) raises a banner and a notification.
ALARM_NOTIFY_PRIORITY = int(_number("ALARM_NOTIFY_PRIORITY", 200, minimum=0))
if ALARM_NOTIFY_PRIORITY > 255:
    raise ImproperlyConfigured(f"ALARM_NOTIFY_PRIORITY: at most 255, got {ALARM_NOTIFY_PRIORITY}")
DEMO_PASSWORD = env.str("DEMO_PASSWORD", default="").strip() or None

# --- E-mail: the occupancy digest (manage.py send_occupancy_report) ------------------
# smtp+tls://USER:PASSWORD@HOST:587, consolemail:// (default: printed, nothing sent), ...
EMAIL_URL = env.str("EMAIL_URL", default="").strip() or "consolemail://"
try:
    _email = environ.Env.email_url_config(EMAIL_URL)
except (ImproperlyConfigured, ValueError, KeyError) as exc:
    raise ImproperlyConfigured(
        f"EMAIL_URL: not an e-mail URL we know ({exc}; use smtp+tls://, smtps:// or consolemail://)"
    ) from None
EMAIL_BACKEND = _email["EMAIL_BACKEND"]
EMAIL_HOST = _email.get("EMAIL_HOST") or "localhost"
EMAIL_PORT = _email.get("EMAIL_PORT") or 25
EMAIL_HOST_USER = _email.get("EMAIL_HOST_USER") or ""
EMAIL_HOST_PASSWORD = _email.get("EMAIL_HOST_PASSWORD") or ""
EMAIL_USE_TLS = bool(_email.get("EMAIL_USE_TLS"))
EMAIL_USE_SSL = bool(_email.get("EMAIL_USE_SSL"))
EMAIL_FILE_PATH = _email.get("EMAIL_FILE_PATH") or None
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="").strip() or "dashboard@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- Operations: health, metrics, logs (docs/deploy.md) -----------------------------
# /metrics answers only "Authorization: Bearer <METRICS_TOKEN>"; unset, /metrics is not found.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="").strip() or None
if METRICS_TOKEN is not None and len(METRICS_TOKEN) < 16:
    raise ImproperlyConfigured("METRICS_TOKEN: at least 16 characters (or unset to turn off)")
# /readyz names the buildings whose session is down only when this is true.
READYZ_DETAIL = _bool("READYZ_DETAIL", False)
# prometheus_client reads this from the environment itself; checked here to fail plainly.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="").strip() or None
if PROMETHEUS_MULTIPROC_DIR is None:
    # prometheus_client turns multiprocess mode on when the variable exists, even empty.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
if PROMETHEUS_MULTIPROC_DIR and not Path(PROMETHEUS_MULTIPROC_DIR).is_dir():
    raise ImproperlyConfigured(
        f"PROMETHEUS_MULTIPROC_DIR: no such directory {PROMETHEUS_MULTIPROC_DIR!r}"
    )
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT: text or json (got {LOG_FORMAT!r})")

# --- Django -----------------------------------------------------------------------
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "dashboard",
]

MIDDLEWARE = [
    # Outermost: the latency of the whole request, refusals included.
    "dashboard.health.RequestMetricsMiddleware",
    # First, so every response gets the policy, static files and early refusals included.
    "dashboard.security.ContentSecurityPolicyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # A building's page shows its clock (dashboard.access.building_for); no other page keeps it.
    "dashboard.access.TimeZoneMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "gooee_site.urls"
ASGI_APPLICATION = "gooee_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# The channel layer: in memory for one process, Redis across processes (docs/deploy.md says
# why the core layer is the default and when pub/sub is worth it).
REDIS_CHANNEL_LAYER = env.str("REDIS_CHANNEL_LAYER", default="core").strip()
_LAYERS = {
    "core": "channels_redis.core.RedisChannelLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
}
if REDIS_CHANNEL_LAYER not in _LAYERS:
    raise ImproperlyConfigured(
        f"REDIS_CHANNEL_LAYER: one of core, pubsub (got {REDIS_CHANNEL_LAYER!r})"
    )
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": _LAYERS[REDIS_CHANNEL_LAYER],
            # redis-py 8 gives every read a 5 s timeout; the core layer blocks 5 s waiting
            # for messages, so an idle channel would fail. Reads may take this long.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 30}]},
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels.layers.InMemoryChannelLayer",
            # The process's page hub (dashboard/live/hub.py) gets the frames of every building
            # its pages follow on one channel: room for a window of many buildings at once.
            # (With Redis, one queue per process holds every local channel's messages already.)
            # Pattern and capacity pairs, compiled: channels 4.3's in-memory layer does not
            # compile the documented glob dict itself.
            "CONFIG": {"channel_capacity": [(re.compile(r"^specific\..*!hub\."), 2000)]},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# Login throttling (dashboard/accounts.py): this many failed logins for one username or from
# one address within the window refuse further attempts for the rest of it.
LOGIN_FAILURE_LIMIT = int(_number("LOGIN_FAILURE_LIMIT", 5, minimum=1))
LOGIN_FAILURE_WINDOW_SECONDS = int(_number("LOGIN_FAILURE_WINDOW_SECONDS", 900, minimum=1))

# The cache holds the failure counts: in Redis when there is one, so that every web process
# counts the same failures; otherwise in this process's memory.
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "gooee-cache",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}
# A page rendered before collectstatic (tests, first run) falls back to unhashed names.
WHITENOISE_MANIFEST_STRICT = False
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Secure defaults whenever DEBUG is off; TLS is usually terminated by a proxy in front.
# dashboard.security adds the Content-Security-Policy header.
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
HTTPS = _bool("HTTPS", False)
# `serve` speaks plain HTTP, so with HTTPS a proxy terminates TLS and says so in
# X-Forwarded-Proto. Trust that header only if the proxy sets it (and drops clients' own).
TRUSTED_PROXY_SSL_HEADER = _bool("TRUSTED_PROXY_SSL_HEADER", HTTPS)
if TRUSTED_PROXY_SSL_HEADER:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _bool("SECURE_SSL_REDIRECT", True)
    # Probes and Prometheus reach the web processes directly, in plain HTTP on the inside.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = int(_number("SECURE_HSTS_SECONDS", 3600))
    # Covers subdomains of the dashboard's own host (*.dashboard.example.com), not its
    # siblings; set false when serving from an apex domain with plain-HTTP subdomains.
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    # Preloading is a deliberate, hard-to-undo step for a whole domain: opt in only.
    SECURE_HSTS_PRELOAD = _bool("SECURE_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # "Cannot be submitted to the preload list": that is the choice just made.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "gooee_site.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO").upper()},
    "loggers": {
        "daphne": {"level": "WARNING"},
        "django.channels.server": {"level": "WARNING"},
        # The embedded broker narrates every state transition at INFO.
        "amqtt": {"level": "WARNING"},
        "transitions": {"level": "WARNING"},
    },
}
