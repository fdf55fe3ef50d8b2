"""The privacy page's facts, read from the running configuration (``/help/privacy/``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from django.conf import settings

from studio import permissions as studio_permissions

from . import credentials, storage
from .models import Asset, Credentials

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Place:
    what: str
    where: str
    encrypted: str


def _host(url: str) -> str:
    parsed = urlparse(url)
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else str(parsed.hostname or "")


def database_place() -> str:
    db = settings.DATABASES["default"]
    if "sqlite" in db["ENGINE"]:
        return f"SQLite file {db['NAME']}"
    return f"PostgreSQL {db.get('NAME')} on {db.get('HOST') or 'the local socket'}:{db.get('PORT') or 5432}"


def _storage_options() -> dict[str, Any]:
    default: Any = settings.STORAGES["default"]
    options: dict[str, Any] = dict(default.get("OPTIONS", {}))
    return options


def files_place() -> str:
    if settings.STUDIO_STORAGE == "s3":
        options = _storage_options()
        endpoint = options.get("endpoint_url") or "the default S3 endpoint"
        return f"S3 bucket “{options.get('bucket_name')}” at {endpoint}"
    return f"the folder {settings.MEDIA_ROOT}"


def redis_place() -> str:
    return f"Redis at {_host(settings.REDIS_URL)}" if settings.REDIS_URL else "this process's memory"


def services() -> list[str]:
    """The only addresses the studio's processes connect to."""
    found = [f"the database ({database_place()})"]
    if settings.REDIS_URL:
        found.append(f"Redis ({_host(settings.REDIS_URL)})")
    if settings.STUDIO_STORAGE == "s3":
        found.append(f"the file store ({_storage_options().get('endpoint_url') or 'S3'})")
    return found


def encryption_facts(*, admin: bool) -> dict[str, Any]:
    if not storage.encryption_enabled():
        return {"enabled": False}
    facts: dict[str, Any] = {"enabled": True, "source": storage.key_source_name()}
    if admin:
        try:
            facts["key_id"] = storage.current_keyring().current_id.hex()
        except Exception:  # the start-up check already refused a bad key; never break the page over it
            logger.exception("could not read the encryption key for the privacy page")
    return facts


def credentials_facts() -> dict[str, Any]:
    if not settings.STUDIO_C2PA:
        return {"enabled": False}
    facts: dict[str, Any] = {
        "enabled": True,
        "include_prompt": bool(settings.STUDIO_C2PA_INCLUDE_PROMPT),
        "own_pki": credentials.uses_own_pki(),
        "hook": bool(settings.STUDIO_C2PA_SIGNER),
    }
    try:
        facts["root"] = credentials.describe_certificate(credentials.root_certificate_pem())
    except Exception:
        logger.exception("could not read the Content Credentials root for the privacy page")
    return facts


def page_context(user: Any) -> dict[str, Any]:
    admin = bool(getattr(user, "is_admin", False))
    encrypted = storage.encryption_enabled()
    places = [
        Place(
            "Images, thumbnails, inpainting masks, ControlNet control maps and uploads",
            files_place(),
            "encrypted (AES-256-GCM, a key per file)" if encrypted else "not encrypted",
        ),
        Place(
            "Accounts, projects, prompts and parameters, reviews, comments, quotas and the audit log",
            database_place(),
            "not encrypted by the studio: put the database on an encrypted volume",
        ),
        Place(
            "Queued jobs and live previews (kept for the job's run only)",
            redis_place(),
            "not encrypted by the studio: Redis keeps nothing on disk in the embedded mode",
        ),
        Place("Models", str(settings.MODELS_DIR), "not encrypted: model files are read as they are"),
        Place(
            "Exports in progress",
            "streamed to the downloader, never written to disk",
            "decrypted on the way out only",
        ),
    ]
    projects = studio_permissions.projects_visible_to(user).order_by("name")
    unsigned = None
    if admin:
        unsigned = Asset.objects.filter(credentials=Credentials.UNSIGNED).count()
    return {
        "places": places,
        "encryption": encryption_facts(admin=admin),
        "credentials": credentials_facts(),
        "manifest_fields": [
            "the claim generator (Studio and its version)",
            "what was done: created by a trained model, or edited from a parent image (inpainting, "
            "img2img, variations, upscales), with the parent and its own credentials as an ingredient",
            "the model's name and sha256",
            "the project and the author",
            "the parameters (seed, steps, guidance, scheduler, size, mode)"
            + ("" if settings.STUDIO_C2PA_INCLUDE_PROMPT else ", without the prompts"),
            "on exported files: the review decisions (who approved, and when) and who exported it",
        ],
        "retention": [(p, p.retention_days) for p in projects],
        "services": services(),
        "unsigned": unsigned,
        "admin": admin,
    }
