"""Studio settings, read from the environment.

Three modes share this one module:

* ``embedded`` (default, ``make run``): SQLite and media under ``STUDIO_DATA_DIR`` (``./var``), a private
  redis-server started by the launcher, a secret key generated once and kept in the data dir.
* ``production``: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` and ``STUDIO_SECRET_KEY`` (or ``_FILE``) are
  required; the process refuses to start without them.
* ``test``: what the test suite uses; PostgreSQL and Redis when ``DATABASE_URL`` / ``REDIS_URL`` are set.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import secrets
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlparse

from celery.schedules import crontab
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


def env_optional_bool(name: str) -> bool | None:
    """``env_bool``, where unset (or empty) is None: the default is decided elsewhere."""
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else env_bool(name)


BYTE_SUFFIXES = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def env_bytes(name: str, default: int) -> int:
    """A size in bytes: a plain number, or one with a binary suffix (``512M``, ``24G``, ``1.5T``)."""
    value = os.environ.get(name, "").strip().upper().removesuffix("B").removesuffix("I")
    if not value:
        return default
    scale = BYTE_SUFFIXES.get(value[-1], 1)
    number = value[:-1] if value[-1] in BYTE_SUFFIXES else value
    try:
        return int(float(number) * scale)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a size in bytes, such as 24G, not {value!r}.") from None


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


def redis_url_has_password(url: str) -> bool:
    """Whether a Redis URL carries a password (a unix:// URL takes it as ``?password=``)."""
    parsed = urlparse(url)
    return bool(parsed.password or parse_qs(parsed.query).get("password"))


def redis_database(url: str) -> int:
    """The database number a Redis URL selects (``/N``, or ``?db=N``; 0 by default)."""
    parsed = urlparse(url)
    number = parsed.path.lstrip("/") if parsed.scheme != "unix" else ""
    number = number or (parse_qs(parsed.query).get("db") or ["0"])[0]
    return int(number) if number.isdigit() else 0


def redis_url_with_password(url: str, password: str) -> str:
    """``url`` with ``password`` put in, unless it has one already (or either is empty)."""
    if not url or not password or redis_url_has_password(url):
        return url
    parsed = urlparse(url)
    if parsed.scheme == "unix":
        query = "&".join(filter(None, [parsed.query, "password=" + quote(password, safe="")]))
        return f"unix://{parsed.path}?{query}"
    user = quote(unquote(parsed.username or ""), safe="")
    netloc = f"{user}:{quote(password, safe='')}@{parsed.netloc.rpartition('@')[2]}"
    return parsed._replace(netloc=netloc).geturl()


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
        # Each web thread, worker and socket thread keeps its connection between requests and tasks: the
        # web process runs views on a fixed set of threads (studio/web_threads.py), so none is left behind.
        "CONN_MAX_AGE": env_int("STUDIO_DB_CONN_MAX_AGE", 60),
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
# The studio's own reverse proxies (addresses or networks, e.g. "10.0.0.2,10.1.0.0/16"): only requests from
# them have their X-Forwarded-For believed for the audit trail's addresses. Empty: the peer's address.
STUDIO_TRUSTED_PROXIES = env_list("STUDIO_TRUSTED_PROXIES", [])
for _proxy in STUDIO_TRUSTED_PROXIES:
    try:
        ipaddress.ip_network(_proxy, strict=False)
    except ValueError:
        raise ImproperlyConfigured(
            f"STUDIO_TRUSTED_PROXIES: {_proxy!r} is not an IP address or network."
        ) from None

# --- apps --
INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",  # allauth's passkey pages
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.openid_connect",
    "allauth.mfa",
    "studio",
    "generation",
    "gallery",
]

MIDDLEWARE = [
    "studio.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "studio.headers.StudioCSPMiddleware",
    "studio.headers.NoStoreMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "studio.auth.BearerTokenMiddleware",
    "studio.boundary.ApiErrorsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "studio.user_sessions.SessionLifetimeMiddleware",
    "studio.mfa_policy.MfaRequiredMiddleware",
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
# Redis carries jobs, live previews and cancel flags, so production insists on a password (in the URL, or
# from STUDIO_REDIS_PASSWORD / _FILE) unless the operator says the network alone protects it. rediss:// is
# TLS; STUDIO_REDIS_CA_FILE names the CA that signed the server's certificate when it is not a system CA.
REDIS_URL = env_secret("REDIS_URL")
if not REDIS_URL and STUDIO_ENV == "embedded" and (RUN_DIR / "redis.url").exists():
    # A management command run beside `make run` joins the launcher's private redis-server.
    REDIS_URL = (RUN_DIR / "redis.url").read_text().strip()
if PRODUCTION and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_URL must be set in production (Celery broker and channel layer).")
REDIS_URL = redis_url_with_password(REDIS_URL, env_secret("STUDIO_REDIS_PASSWORD"))
STUDIO_REDIS_INSECURE = env_bool("STUDIO_REDIS_INSECURE", False)
if PRODUCTION and not redis_url_has_password(REDIS_URL) and not STUDIO_REDIS_INSECURE:
    raise ImproperlyConfigured(
        "REDIS_URL has no password; refusing to start. Set `requirepass` (or an ACL user) in Redis and give "
        "it in the URL (redis://:PASSWORD@host:6379/0, rediss:// for TLS) or in STUDIO_REDIS_PASSWORD "
        "(or STUDIO_REDIS_PASSWORD_FILE). Set STUDIO_REDIS_INSECURE=true only if nothing but the studio's "
        "own hosts can reach Redis."
    )
STUDIO_REDIS_CA_FILE = env_str("STUDIO_REDIS_CA_FILE")
REDIS_TLS = urlparse(REDIS_URL).scheme == "rediss"
# redis-py's options for a verified TLS connection (the cache and the channel layer); Celery's broker
# takes the same as ssl module constants.
REDIS_TLS_OPTIONS: dict[str, Any] = (
    {"ssl_cert_reqs": "required", **({"ssl_ca_certs": STUDIO_REDIS_CA_FILE} if STUDIO_REDIS_CA_FILE else {})}
    if REDIS_TLS
    else {}
)

if REDIS_URL:
    # Live events are ephemeral (a client that connects late gets a snapshot), so the pub/sub layer fits:
    # one PUBLISH per event instead of a Lua script per group member, measurably lighter per step.
    # Messages are msgpack (plain data), never pickle. Pub/sub channels are not scoped by Redis database, so
    # the prefix names the database: two studios (or test runs) on one Redis never hear each other's events.
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, **REDIS_TLS_OPTIONS}],
                "prefix": f"studio:ws:{redis_database(REDIS_URL)}",
                "serializer_format": "msgpack",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "studio.redis_cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "studio",
            "OPTIONS": {"serializer": "studio.cache_json.JSONSerializer", **REDIS_TLS_OPTIONS},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- celery --
CELERY_BROKER_URL = REDIS_URL or "memory://"
if REDIS_TLS:
    CELERY_BROKER_USE_SSL = {
        "ssl_cert_reqs": ssl.CERT_REQUIRED,
        **({"ssl_ca_certs": STUDIO_REDIS_CA_FILE} if STUDIO_REDIS_CA_FILE else {}),
    }
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
# Where the admin's usage pages (studio/usage.py) get their counts of images and GPU-seconds: the app that
# owns jobs, so that the studio app never imports it.
STUDIO_USAGE_COUNTS = "generation.usage.counts"
CELERY_TASK_ROUTES = {
    "generation.tasks.run_job": {"queue": STUDIO_GPU_QUEUE},
    "generation.tasks.sweep_stale_jobs": {"queue": "maintenance"},
    "gallery.tasks.purge_expired_assets": {"queue": "maintenance"},
}
STUDIO_SWEEP_SECONDS = env_float("STUDIO_SWEEP_SECONDS", 30.0)
# The daily purge of drafts and rejected images past their project's retention, at this hour (UTC).
STUDIO_RETENTION_HOUR = env_int("STUDIO_RETENTION_HOUR", 3)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {"task": "generation.tasks.sweep_stale_jobs", "schedule": STUDIO_SWEEP_SECONDS},
    "purge-expired-assets": {
        "task": "gallery.tasks.purge_expired_assets",
        "schedule": crontab(hour=STUDIO_RETENTION_HOUR, minute=17),
    },
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
# A GPU worker keeps the models it loaded warm, bounded by memory (deploy/README.md, "GPU fast path"): on the
# GPU while their weights fit this share of the device's memory (or STUDIO_GPU_CACHE_BYTES, when set; the rest
# is the running job's), then in host RAM while they fit STUDIO_HOST_CACHE_BYTES (0: half of the memory of the
# machine, or of its container), the least recently used leaving first.
STUDIO_GPU_MEMORY_FRACTION = env_float("STUDIO_GPU_MEMORY_FRACTION", 0.9)
if not 0 < STUDIO_GPU_MEMORY_FRACTION <= 1:
    raise ImproperlyConfigured("STUDIO_GPU_MEMORY_FRACTION must be above 0 and at most 1.")
STUDIO_GPU_CACHE_BYTES = env_bytes("STUDIO_GPU_CACHE_BYTES", 0)
STUDIO_HOST_CACHE_BYTES = env_bytes("STUDIO_HOST_CACHE_BYTES", 0)
# On CUDA each model family runs in its own precision and options (generation/engine/families.py); these
# override them for every model whose studio.json does not say otherwise. The CPU always runs fp32, eager.
# fp16 is no global choice: FLUX overflows in it (a model's studio.json may still ask for it).
STUDIO_DTYPE = env_str("STUDIO_DTYPE", "")
if STUDIO_DTYPE not in {"", "bf16", "fp32"}:
    raise ImproperlyConfigured("STUDIO_DTYPE must be bf16 or fp32 (or empty: each family's own).")
STUDIO_CHANNELS_LAST = env_optional_bool("STUDIO_CHANNELS_LAST")
# torch.compile of the denoiser (on CUDA only), in max-autotune mode, or with CUDA graphs (reduce-overhead).
STUDIO_TORCH_COMPILE = env_bool("STUDIO_TORCH_COMPILE", False)
STUDIO_CUDA_GRAPHS = env_bool("STUDIO_CUDA_GRAPHS", False)
# Cross-user batching: a worker that takes a job also claims queued jobs that can share its pipeline call
# (same model, mode, size, steps, scheduler, LoRAs, guidance and strength), up to this many images per call
# and what the device's free memory allows. 1 turns batching off.
STUDIO_MAX_BATCH = env_int("STUDIO_MAX_BATCH", 8)
# A call waits this long with no compatible job arriving before it starts (at most four times this in all),
# so that people pressing Generate at the same moment share it. 0: never wait.
STUDIO_BATCH_WAIT_MS = env_float("STUDIO_BATCH_WAIT_MS", 50.0)
# Each generation worker tells the others what it holds this often (its state lives three beats), and the
# web routes jobs by it (generation/fleet.py).
STUDIO_WORKER_BEAT_SECONDS = env_float("STUDIO_WORKER_BEAT_SECONDS", 5.0)
# false sends every job to the pool's queue for whichever worker is free (no model-aware routing).
STUDIO_ROUTING = env_bool("STUDIO_ROUTING", True)
# The largest image side any job may ask for, whatever a model's studio.json says (it may only lower it).
STUDIO_MAX_IMAGE_SIZE = env_int("STUDIO_MAX_IMAGE_SIZE", 2048)
# Quotas count per calendar month (or week, or day), in UTC.
STUDIO_QUOTA_PERIOD = env_str("STUDIO_QUOTA_PERIOD", "month")
if STUDIO_QUOTA_PERIOD not in {"month", "week", "day"}:
    raise ImproperlyConfigured("STUDIO_QUOTA_PERIOD must be month, week or day.")
# The most jobs one person may have waiting or running at once (0: no limit); a submit past it is a 429.
STUDIO_MAX_QUEUED_JOBS = env_int("STUDIO_MAX_QUEUED_JOBS", 20)
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
# --- encryption at rest (gallery/encryption.py, gallery/storage.py) --
# Every stored file is encrypted with its own data key, wrapped by this master key: 32 random bytes in
# URL-safe base64 (`manage.py studio_keygen`), from STUDIO_ENCRYPTION_KEY or the file named by
# STUDIO_ENCRYPTION_KEY_FILE.
# Giving a key switches encryption on; the embedded mode makes a key in the data dir on its first run with
# STUDIO_ENCRYPT_AT_REST=true. Old keys a rotation replaced stay readable while listed in
# STUDIO_ENCRYPTION_PREVIOUS_KEYS (comma-separated) or the file STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE.
STUDIO_ENCRYPTION_KEY = env_str("STUDIO_ENCRYPTION_KEY").strip()
STUDIO_ENCRYPTION_KEY_FILE = env_str("STUDIO_ENCRYPTION_KEY_FILE")
STUDIO_ENCRYPTION_PREVIOUS_KEYS = env_list("STUDIO_ENCRYPTION_PREVIOUS_KEYS", [])
STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE = env_str("STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE")
# Once the embedded mode has made its key, later runs keep encrypting without being told again.
STUDIO_ENCRYPT_AT_REST = env_bool(
    "STUDIO_ENCRYPT_AT_REST",
    bool(STUDIO_ENCRYPTION_KEY or STUDIO_ENCRYPTION_KEY_FILE)
    or (not PRODUCTION and (DATA_DIR / "encryption.key").exists()),
)
if STUDIO_ENCRYPT_AT_REST and not (STUDIO_ENCRYPTION_KEY or STUDIO_ENCRYPTION_KEY_FILE):
    if PRODUCTION:
        raise ImproperlyConfigured(
            "STUDIO_ENCRYPT_AT_REST=true needs STUDIO_ENCRYPTION_KEY or STUDIO_ENCRYPTION_KEY_FILE in "
            "production (make a key with `manage.py studio_keygen`); refusing to start."
        )
    # Embedded and test modes: a key of their own in the data dir, made once, readable by its user only.
    _key_file = DATA_DIR / "encryption.key"
    if not _key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        try:
            _fd = os.open(_key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process of this studio made it first
        else:
            with os.fdopen(_fd, "w") as _f:
                _f.write(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode() + "\n")
    STUDIO_ENCRYPTION_KEY_FILE = str(_key_file)
    if not STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE:
        STUDIO_ENCRYPTION_PREVIOUS_KEYS_FILE = str(DATA_DIR / "encryption.previous-keys")
if STUDIO_ENCRYPT_AT_REST:
    _default_storage = {
        **_default_storage,
        "BACKEND": "gallery.storage.EncryptedS3Storage"
        if STUDIO_STORAGE == "s3"
        else "gallery.storage.EncryptedFileSystemStorage",
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
# Request bodies over these are refused before they are read (413; studio/body_limits.py): job bodies may
# carry an inpainting mask, uploads get STUDIO_UPLOAD_MAX_BYTES and 1 MB of form framing, the rest this.
STUDIO_MAX_BODY_BYTES = env_int("STUDIO_MAX_BODY_BYTES", 1024 * 1024)
STUDIO_JOB_MAX_BODY_BYTES = env_int("STUDIO_JOB_MAX_BODY_BYTES", 9 * 1024 * 1024)

# --- web processes, metrics, logs --
# daphne processes sharing the web port (make run and manage.py studio_web); 0 = one per core, at most 8.
STUDIO_WEB_PROCESSES = env_int("STUDIO_WEB_PROCESSES", 0)
# Threads each web process runs its views on (studio/web_threads.py): a request waits for a free one rather
# than starting its own, and each keeps its database connection between requests.
STUDIO_WEB_THREADS = env_int("STUDIO_WEB_THREADS", 4)
# The embedded studio's worker runs this many steps below normal CPU priority: on one machine, pages and live
# previews answer first and generation takes the CPU they leave (a GPU worker hardly needs the CPU at all).
STUDIO_WORKER_NICE = env_int("STUDIO_WORKER_NICE", 10)
STUDIO_ACCESS_LOG = env_bool("STUDIO_ACCESS_LOG", True)
# How long a websocket may wait for its handshake to be accepted. Pages opened in a burst (a studio arriving
# at once) queue their sockets' checks; daphne's own 5 s drops them under such a burst.
STUDIO_WEBSOCKET_HANDSHAKE_SECONDS = env_int("STUDIO_WEBSOCKET_HANDSHAKE_SECONDS", 60)
# /metrics (Prometheus): a scraper sends this bearer token, or comes from one of these networks.
STUDIO_METRICS_TOKEN = env_secret("STUDIO_METRICS_TOKEN")
STUDIO_METRICS_ALLOW = env_list("STUDIO_METRICS_ALLOW", ["127.0.0.1/32", "::1/128"])
STUDIO_LOG_FORMAT = env_str("STUDIO_LOG_FORMAT", "plain")
if STUDIO_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured("STUDIO_LOG_FORMAT must be plain or json.")

# --- Content Credentials (gallery/credentials.py) --
# Every image the studio makes is signed with a C2PA manifest. Without STUDIO_C2PA_CERT_CHAIN the studio
# signs with a root and a signing certificate of its own, made on first use in STUDIO_C2PA_DIR.
STUDIO_C2PA = env_bool("STUDIO_C2PA", True)
# Prompts stay out of manifests unless this says otherwise (README: why).
STUDIO_C2PA_INCLUDE_PROMPT = env_bool("STUDIO_C2PA_INCLUDE_PROMPT", False)
STUDIO_C2PA_DIR = env_str("STUDIO_C2PA_DIR", str(DATA_DIR / "credentials"))
STUDIO_C2PA_ORGANIZATION = env_str("STUDIO_C2PA_ORGANIZATION", "Studio")
# The operator's PKI: the signing certificate then its intermediates (PEM), and its key (PEM) or a hook
# "module:function" that signs bytes (a KMS, or an HSM through PKCS#11); the root to publish and trust.
STUDIO_C2PA_CERT_CHAIN = env_str("STUDIO_C2PA_CERT_CHAIN")
STUDIO_C2PA_KEY_FILE = env_str("STUDIO_C2PA_KEY_FILE")
STUDIO_C2PA_SIGNER = env_str("STUDIO_C2PA_SIGNER")
STUDIO_C2PA_ROOT = env_str("STUDIO_C2PA_ROOT")
STUDIO_C2PA_ALG = env_str("STUDIO_C2PA_ALG", "es256")
# Further roots whose signatures the Verify page reports as trusted (a PEM bundle).
STUDIO_C2PA_TRUST_ANCHORS = env_str("STUDIO_C2PA_TRUST_ANCHORS")
if STUDIO_C2PA_CERT_CHAIN and not (STUDIO_C2PA_KEY_FILE or STUDIO_C2PA_SIGNER):
    raise ImproperlyConfigured("STUDIO_C2PA_CERT_CHAIN needs STUDIO_C2PA_KEY_FILE or STUDIO_C2PA_SIGNER.")
if (STUDIO_C2PA_KEY_FILE or STUDIO_C2PA_SIGNER) and not STUDIO_C2PA_CERT_CHAIN:
    raise ImproperlyConfigured("STUDIO_C2PA_KEY_FILE and STUDIO_C2PA_SIGNER need STUDIO_C2PA_CERT_CHAIN.")

# --- auth --
# Sign-in is django-allauth's: the password form, OpenID Connect single sign-on, MFA and the throttle. The
# studio's own rules sit in its adapters (studio/sign_in.py, studio/sso.py, studio/mfa_policy.py).
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "account_login"
AUTHENTICATION_BACKENDS = ["studio.sign_in.PasswordBackend"]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
    {"NAME": "studio.breached.BreachedPasswordValidator"},
]
# Sorted SHA-1 digests of breached passwords, one upper-case hex digest a line (optionally ":count", as in
# the Pwned Passwords downloads); the studio ships a list, and an operator may point this at a larger one.
STUDIO_BREACHED_PASSWORDS_FILE = Path(
    env_str("STUDIO_BREACHED_PASSWORDS_FILE", str(BASE_DIR / "studio" / "data" / "breached-sha1.txt"))
)
if TESTING:
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

ACCOUNT_ADAPTER = "studio.sign_in.AccountAdapter"
ACCOUNT_FORMS = {"login": "studio.sign_in.LoginForm"}
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*", "email", "password1*"]
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_SESSION_REMEMBER = True  # how long a session lasts is STUDIO_SESSION_* below, not a checkbox
ACCOUNT_LOGOUT_ON_GET = False
ACCOUNT_LOGOUT_ON_PASSWORD_CHANGE = False
ACCOUNT_EMAIL_NOTIFICATIONS = False
ACCOUNT_PREVENT_ENUMERATION = True
# Failed password sign-ins: at most this many per account and per client address within the window; then
# that account (or address) is refused, the right password included, until the window has passed.
STUDIO_SIGN_IN_FAILURES_PER_ACCOUNT = env_int("STUDIO_SIGN_IN_FAILURES_PER_ACCOUNT", 5)
STUDIO_SIGN_IN_FAILURES_PER_IP = env_int("STUDIO_SIGN_IN_FAILURES_PER_IP", 20)
STUDIO_SIGN_IN_LOCKOUT_SECONDS = env_int("STUDIO_SIGN_IN_LOCKOUT_SECONDS", 15 * 60)
ACCOUNT_RATE_LIMITS = {
    "login_failed": (
        f"{STUDIO_SIGN_IN_FAILURES_PER_IP}/{STUDIO_SIGN_IN_LOCKOUT_SECONDS}s/ip,"
        f"{STUDIO_SIGN_IN_FAILURES_PER_ACCOUNT}/{STUDIO_SIGN_IN_LOCKOUT_SECONDS}s/key"
    ),
    # Signing in at all (right or wrong), per address: a brake on scripted guessing across many accounts.
    "login": "60/m/ip",
    "reauthenticate": "10/m/ip",
}

# Single sign-on: OpenID Connect with the studio's identity provider, when STUDIO_OIDC_ISSUER is set.
STUDIO_OIDC_ISSUER = env_str("STUDIO_OIDC_ISSUER").rstrip("/")
STUDIO_OIDC_CLIENT_ID = env_str("STUDIO_OIDC_CLIENT_ID")
STUDIO_OIDC_CLIENT_SECRET = env_secret("STUDIO_OIDC_CLIENT_SECRET")
STUDIO_OIDC_NAME = env_str("STUDIO_OIDC_NAME", "Single sign-on")
STUDIO_OIDC_PROVIDER_ID = "sso"
STUDIO_OIDC_SCOPES = env_list("STUDIO_OIDC_SCOPES", ["openid", "profile", "email", "groups"])
STUDIO_OIDC_GROUPS_CLAIM = env_str("STUDIO_OIDC_GROUPS_CLAIM", "groups")
# Who may sign in (an account is made at the first sign-in): an email domain or an IdP group listed here.
# Nobody when both are empty.
STUDIO_SSO_ALLOWED_DOMAINS = [d.lower().lstrip("@") for d in env_list("STUDIO_SSO_ALLOWED_DOMAINS", [])]
STUDIO_SSO_ALLOWED_GROUPS = env_list("STUDIO_SSO_ALLOWED_GROUPS", [])
# An email domain counts only when the IdP marks the email verified (turn off for IdPs that never say).
STUDIO_SSO_REQUIRE_VERIFIED_EMAIL = env_bool("STUDIO_SSO_REQUIRE_VERIFIED_EMAIL", True)
# Members of these IdP groups are site admins; the mapping is applied at every SSO sign-in.
STUDIO_SSO_ADMIN_GROUPS = env_list("STUDIO_SSO_ADMIN_GROUPS", [])
# SSO only: password sign-in is off for everyone but these break-glass accounts (usernames).
STUDIO_SSO_ONLY = env_bool("STUDIO_SSO_ONLY", False)
STUDIO_SSO_BREAK_GLASS = env_list("STUDIO_SSO_BREAK_GLASS", [])
if STUDIO_OIDC_ISSUER and not (STUDIO_OIDC_CLIENT_ID and STUDIO_OIDC_CLIENT_SECRET):
    raise ImproperlyConfigured(
        "STUDIO_OIDC_ISSUER needs STUDIO_OIDC_CLIENT_ID and STUDIO_OIDC_CLIENT_SECRET."
    )
if STUDIO_SSO_ONLY and not STUDIO_OIDC_ISSUER:
    raise ImproperlyConfigured("STUDIO_SSO_ONLY=true needs single sign-on configured (STUDIO_OIDC_ISSUER).")

SOCIALACCOUNT_ADAPTER = "studio.sso.SocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False  # the sign-in button posts; a link elsewhere cannot start a sign-in
SOCIALACCOUNT_STORE_TOKENS = False
# A verified email from the IdP signs in the studio account that already has it.
SOCIALACCOUNT_EMAIL_AUTHENTICATION = True
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_PROVIDERS: dict = {"openid_connect": {"OAUTH_PKCE_ENABLED": True, "APPS": []}}
if STUDIO_OIDC_ISSUER:
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"] = [
        {
            "provider_id": STUDIO_OIDC_PROVIDER_ID,
            "name": STUDIO_OIDC_NAME,
            "client_id": STUDIO_OIDC_CLIENT_ID,
            "secret": STUDIO_OIDC_CLIENT_SECRET,
            "settings": {
                "server_url": STUDIO_OIDC_ISSUER,
                "token_auth_method": env_str("STUDIO_OIDC_TOKEN_AUTH_METHOD", "client_secret_basic"),
                "oauth_pkce_enabled": True,
                "fetch_userinfo": True,
            },
        }
    ]
    SOCIALACCOUNT_PROVIDERS["openid_connect"]["SCOPE"] = STUDIO_OIDC_SCOPES

# Multi-factor authentication: authenticator apps (TOTP) with recovery codes, and passkeys / security keys.
MFA_ADAPTER = "studio.mfa_policy.MfaAdapter"
STUDIO_PASSKEYS = env_bool("STUDIO_PASSKEYS", True)
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"] + (["webauthn"] if STUDIO_PASSKEYS else [])
MFA_TOTP_ISSUER = env_str("STUDIO_MFA_ISSUER", "Studio")
MFA_RECOVERY_CODE_COUNT = 10
# WebAuthn needs a secure origin; embedded and test mode serve plain http on this machine.
MFA_WEBAUTHN_ALLOW_INSECURE_ORIGIN = not PRODUCTION
# Who must have MFA before using the studio: off, admins (site admins) or everyone.
STUDIO_MFA_REQUIRED = env_str("STUDIO_MFA_REQUIRED", "off").strip().lower()
if STUDIO_MFA_REQUIRED not in {"off", "admins", "everyone"}:
    raise ImproperlyConfigured("STUDIO_MFA_REQUIRED must be off, admins or everyone.")
# A session that signed in through the IdP counts as multi-factor (the IdP enforces its own policy).
STUDIO_MFA_TRUST_SSO = env_bool("STUDIO_MFA_TRUST_SSO", True)

# Sessions end after this long without a request (idle), and this long after sign-in whatever happens.
STUDIO_SESSION_IDLE_SECONDS = env_int("STUDIO_SESSION_IDLE_SECONDS", 8 * 3600)
STUDIO_SESSION_MAX_SECONDS = env_int("STUDIO_SESSION_MAX_SECONDS", 7 * 24 * 3600)
SESSION_COOKIE_AGE = STUDIO_SESSION_MAX_SECONDS

# Django's own admin site (/admin/): off unless turned on, and read-only when on.
STUDIO_DJANGO_ADMIN = env_bool("STUDIO_DJANGO_ADMIN", False)

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("STUDIO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- security --
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
# Only the studio's own scripts, styles and images (plus data:/blob: images: previews, the mask editor);
# nothing inline. studio/headers.py adds the page's own ws:/wss: origin to connect-src.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:", "blob:"],
        "connect-src": ["'self'"],
        "font-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
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
