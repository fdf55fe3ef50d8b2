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
import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

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
DATABASE_URL = env_str("DATABASE_URL")
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
REDIS_URL = env_str("REDIS_URL")
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
    "gallery.tasks.purge_expired_assets": {"queue": "maintenance"},
}
# The daily purge of drafts and rejected images past their project's retention, at this hour (UTC).
STUDIO_RETENTION_HOUR = env_int("STUDIO_RETENTION_HOUR", 3)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {"task": "generation.tasks.sweep_stale_jobs", "schedule": 30.0},
    "purge-expired-assets": {
        "task": "gallery.tasks.purge_expired_assets",
        "schedule": crontab(hour=STUDIO_RETENTION_HOUR, minute=17),
    },
}

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
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
# daphne serves /static/ itself unless a front proxy does (STUDIO_SERVE_STATIC=false).
STUDIO_SERVE_STATIC = env_bool("STUDIO_SERVE_STATIC", True)
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024
# Start images people upload: refused above this many bytes or pixels (checked before decoding).
STUDIO_UPLOAD_MAX_BYTES = env_int("STUDIO_UPLOAD_MAX_BYTES", 20 * 1024 * 1024)
STUDIO_UPLOAD_MAX_PIXELS = env_int("STUDIO_UPLOAD_MAX_PIXELS", 16 * 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

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
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("STUDIO_LOG_LEVEL", "INFO")},
    "loggers": {"django.channels.server": {"level": "WARNING"}},
}
