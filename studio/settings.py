"""Studio settings, read from the environment.

Three modes share this one module:

* ``embedded`` (default, ``make run``): SQLite and media under ``STUDIO_DATA_DIR`` (``./var``), a private
  redis-server started by the launcher, a secret key generated once and kept in the data dir.
* ``production``: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` and ``STUDIO_SECRET_KEY`` (or ``_FILE``) are
  required; the process refuses to start without them.
* ``test``: what the test suite uses; PostgreSQL and Redis when ``DATABASE_URL`` / ``REDIS_URL`` are set.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value not in (None, "") else default


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def env_secret(name: str) -> str:
    """A secret from ``NAME`` or from the file named by ``NAME_FILE`` (docker/k8s secrets)."""
    path = os.environ.get(f"{name}_FILE")
    if path:
        return Path(path).read_text().strip()
    return os.environ.get(name, "")


def database_from_url(url: str) -> dict:
    """Parse ``postgresql://user:pass@host:port/name?opt=v`` or ``sqlite:///path`` into a DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parsed.query))
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": env_int("STUDIO_DB_CONN_MAX_AGE", 60),
            "CONN_HEALTH_CHECKS": True,
            "OPTIONS": options,
        }
    if parsed.scheme == "sqlite":
        return sqlite_database(Path(unquote(parsed.path)) if parsed.path not in ("", "/") else None)
    raise ImproperlyConfigured(
        f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use postgresql or sqlite)."
    )


def sqlite_database(path: Path | None) -> dict:
    # WAL and IMMEDIATE transactions let the web server, the worker and the sweeper write concurrently
    # without "database is locked" errors.
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": str(path) if path else ":memory:",
        "OPTIONS": {
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
        },
    }


STUDIO_ENV = env_str("STUDIO_ENV", "embedded")
if STUDIO_ENV not in {"embedded", "production", "test"}:
    raise ImproperlyConfigured("STUDIO_ENV must be one of embedded, production, test.")
PRODUCTION = STUDIO_ENV == "production"
TESTING = STUDIO_ENV == "test"

DATA_DIR = Path(env_str("STUDIO_DATA_DIR", str(BASE_DIR / "var"))).resolve()
MODELS_DIR = Path(env_str("STUDIO_MODELS_DIR", str(DATA_DIR / "models"))).resolve()
MEDIA_ROOT = str(Path(env_str("STUDIO_MEDIA_DIR", str(DATA_DIR / "media"))).resolve())
RUN_DIR = DATA_DIR / "run"

# --- secrets --
SECRET_KEY = env_secret("STUDIO_SECRET_KEY")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "STUDIO_SECRET_KEY (or STUDIO_SECRET_KEY_FILE) must be set in production; refusing to start."
        )
    if TESTING:
        SECRET_KEY = "test-only-" + "x" * 50  # noqa: S105 - never used outside the test suite
    else:
        # Embedded mode: generate once and keep it in the data dir so sessions survive restarts.
        key_file = DATA_DIR / "secret_key"
        if not key_file.exists():
            DATA_DIR.mkdir(parents=True, exist_ok=True)
            key_file.write_text(secrets.token_urlsafe(64))
            key_file.chmod(0o600)
        SECRET_KEY = key_file.read_text().strip()

DEBUG = env_bool("STUDIO_DEBUG", False)
ALLOWED_HOSTS = env_list(
    "STUDIO_ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver"]
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("STUDIO_ALLOWED_HOSTS must list the studio's host names in production.")
CSRF_TRUSTED_ORIGINS = env_list("STUDIO_CSRF_TRUSTED_ORIGINS", [])

# --- apps --
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "studio",
    "generation",
    "gallery",
]

MIDDLEWARE = [
    "studio.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "studio.auth.BearerTokenMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "studio.urls"
ASGI_APPLICATION = "studio.asgi.application"
WSGI_APPLICATION = "studio.wsgi.application"

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
                "gallery.context_processors.unread_notifications",
            ],
        },
    },
]

# --- database --
# The URLs carry passwords: like every secret they may come from files (DATABASE_URL_FILE, REDIS_URL_FILE).
DATABASE_URL = env_secret("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": database_from_url(DATABASE_URL)}
elif PRODUCTION:
    raise ImproperlyConfigured("DATABASE_URL must point at PostgreSQL in production.")
elif TESTING:
    DATABASES = {"default": sqlite_database(None)}
else:
    DATABASES = {"default": sqlite_database(DATA_DIR / "studio.sqlite3")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "studio.User"

# --- redis: broker, channel layer, cache --
REDIS_URL = env_secret("REDIS_URL")
if not REDIS_URL and STUDIO_ENV == "embedded" and (RUN_DIR / "redis.url").exists():
    # A management command run beside `make run` joins the launcher's private redis-server.
    REDIS_URL = (RUN_DIR / "redis.url").read_text().strip()
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (Celery broker and channel layer).")

if REDIS_URL:
    # Live events are ephemeral (a client that connects late gets a snapshot), so the pub/sub layer fits:
    # one PUBLISH per event instead of a Lua script per group member, measurably lighter per step.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": REDIS_URL}], "prefix": "studio:ws"},
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "studio",
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- celery --
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = None  # the job row is the truth, never the result backend
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("STUDIO_JOB_SOFT_TIME_LIMIT", 15 * 60)
CELERY_TASK_TIME_LIMIT = env_int("STUDIO_JOB_TIME_LIMIT", 16 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_TASK_TIME_LIMIT + 300}
CELERY_WORKER_SEND_TASK_EVENTS = False
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
STUDIO_GPU_QUEUE = env_str("STUDIO_GPU_QUEUE", "gpu")
CELERY_TASK_ROUTES = {
    "generation.tasks.run_job": {"queue": STUDIO_GPU_QUEUE},
    "generation.tasks.sweep_stale_jobs": {"queue": "maintenance"},
}
STUDIO_SWEEP_SECONDS = env_float("STUDIO_SWEEP_SECONDS", 30.0)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {"task": "generation.tasks.sweep_stale_jobs", "schedule": STUDIO_SWEEP_SECONDS},
}
# A worker stopped with SIGTERM finishes its running job first (warm shutdown); one that is killed has its
# job re-queued (late acks, and the sweeper watching heartbeats).
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False

# --- jobs --
# A running job's worker refreshes heartbeat_at this often; the sweeper re-queues a running job whose
# heartbeat is older than STALE seconds, and re-sends queued jobs older than REQUEUE seconds.
STUDIO_JOB_HEARTBEAT_SECONDS = env_float("STUDIO_JOB_HEARTBEAT_SECONDS", 5.0)
STUDIO_JOB_STALE_SECONDS = env_float("STUDIO_JOB_STALE_SECONDS", 60.0)
STUDIO_JOB_REQUEUE_SECONDS = env_float("STUDIO_JOB_REQUEUE_SECONDS", 600.0)
STUDIO_JOB_MAX_ATTEMPTS = env_int("STUDIO_JOB_MAX_ATTEMPTS", 3)
STUDIO_PREVIEW_MIN_INTERVAL = env_float("STUDIO_PREVIEW_MIN_INTERVAL", 0.0)
STUDIO_PREVIEW_MAX_SIZE = env_int("STUDIO_PREVIEW_MAX_SIZE", 256)
STUDIO_DEFAULT_MODEL = env_str("STUDIO_DEFAULT_MODEL", "demo")
# Models shipped in the repository (id → folder); a folder of the same name in MODELS_DIR takes precedence.
STUDIO_BUNDLED_MODELS = {"demo": BASE_DIR / "generation" / "demo_model"}
STUDIO_PIPELINE_CACHE_SIZE = env_int("STUDIO_PIPELINE_CACHE_SIZE", 2)
# Quotas count per calendar month (or week, or day), in UTC.
STUDIO_QUOTA_PERIOD = env_str("STUDIO_QUOTA_PERIOD", "month")
if STUDIO_QUOTA_PERIOD not in {"month", "week", "day"}:
    raise ImproperlyConfigured("STUDIO_QUOTA_PERIOD must be month, week or day.")
# Fair share: the next job goes to the user with the least GPU time in this window (seconds).
STUDIO_FAIR_SHARE_WINDOW = env_float("STUDIO_FAIR_SHARE_WINDOW", 3600.0)

# --- storage --
# Media are private: there is no MEDIA_URL; images are served by permission-checked views only.
STUDIO_STORAGE = env_str("STUDIO_STORAGE", "filesystem")
if STUDIO_STORAGE == "s3":
    _default_storage = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": env_str("STUDIO_S3_BUCKET"),
            "endpoint_url": env_str("STUDIO_S3_ENDPOINT_URL") or None,
            "access_key": env_secret("STUDIO_S3_ACCESS_KEY"),
            "secret_key": env_secret("STUDIO_S3_SECRET_KEY"),
            "region_name": env_str("STUDIO_S3_REGION") or None,
            # MinIO's defaults: path-style URLs (bucket in the path) and SigV4 signatures.
            "addressing_style": env_str("STUDIO_S3_ADDRESSING_STYLE", "path"),
            "signature_version": env_str("STUDIO_S3_SIGNATURE_VERSION", "s3v4"),
            "default_acl": "private",
            "querystring_auth": True,
            "querystring_expire": env_int("STUDIO_S3_URL_SECONDS", 60),
            "file_overwrite": False,
        },
    }
else:
    _default_storage = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": MEDIA_ROOT, "base_url": None},
    }
STORAGES = {
    "default": _default_storage,
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("STUDIO_STATIC_ROOT", str(BASE_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
# daphne serves /static/ itself unless a front proxy does (STUDIO_SERVE_STATIC=false).
STUDIO_SERVE_STATIC = env_bool("STUDIO_SERVE_STATIC", True)
# Behind nginx: images are answered with ``X-Accel-Redirect`` to this internal location prefix (nginx streams
# the file after the view checked the permission); empty: daphne streams them itself.
STUDIO_MEDIA_ACCEL = env_str("STUDIO_MEDIA_ACCEL", "")
if STUDIO_MEDIA_ACCEL and not (STUDIO_MEDIA_ACCEL.startswith("/") and STUDIO_MEDIA_ACCEL.endswith("/")):
    raise ImproperlyConfigured("STUDIO_MEDIA_ACCEL must be a location prefix such as /_media/.")
# How long the presigned URL behind an S3 image lives (nginx fetches it at once, inside the studio network).
STUDIO_MEDIA_ACCEL_S3_SECONDS = env_int("STUDIO_MEDIA_ACCEL_S3_SECONDS", 10)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Start images people upload: refused above this many bytes or pixels (checked before decoding).
STUDIO_UPLOAD_MAX_BYTES = env_int("STUDIO_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
STUDIO_UPLOAD_MAX_PIXELS = env_int("STUDIO_UPLOAD_MAX_PIXELS", 16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# --- web processes, metrics, logs --
# daphne processes sharing the web port (make run and manage.py studio_web); 0 = one per core, at most 8.
STUDIO_WEB_PROCESSES = env_int("STUDIO_WEB_PROCESSES", 0)
STUDIO_ACCESS_LOG = env_bool("STUDIO_ACCESS_LOG", True)
# /metrics (Prometheus): a scraper sends this bearer token, or comes from one of these networks.
STUDIO_METRICS_TOKEN = env_secret("STUDIO_METRICS_TOKEN")
STUDIO_METRICS_ALLOW = env_list("STUDIO_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"])
STUDIO_LOG_FORMAT = env_str("STUDIO_LOG_FORMAT", "plain")
if STUDIO_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("STUDIO_LOG_FORMAT must be plain or json.")

# --- auth --
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("STUDIO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- security --
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env_bool("STUDIO_SSL_REDIRECT", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env_int("STUDIO_HSTS_SECONDS", 31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = env_bool("STUDIO_HSTS_PRELOAD", False)
    if not SECURE_HSTS_PRELOAD:
        # Studios run on internal host names, which the public HSTS preload list cannot hold.
        SILENCED_SYSTEM_CHECKS = ["security.W021"]

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "studio.logs.JsonFormatter"},
    },
    "filters": {"job_context": {"()": "studio.logs.JobContextFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": STUDIO_LOG_FORMAT,
            "filters": ["job_context"],
        }
    },
    "root": {"handlers": ["console"], "level": env_str("STUDIO_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
if STUDIO_LOG_FORMAT == "json":
    # Celery's worker would otherwise replace the root handler with its own plain-text one.
    CELERY_WORKER_HIJACK_ROOT_LOGGER = False
