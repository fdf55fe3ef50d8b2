"""The OpenAPI description of ``/api/v1/`` (shared/API.md), served at ``/api/v1/openapi.json``."""

from __future__ import annotations

from typing import Any

from .audit import ACTIONS

ERROR = {"$ref": "#/components/schemas/Error"}


def _response(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Invalid input",
        401: "Not signed in",
        403: "Not allowed",
        404: "Not found or not visible",
        409: "State conflict",
        501: "Not offered by this installation",
    }
    return {str(c): _response(text[c], ERROR) for c in codes}


def _op(
    summary: str,
    ok: dict[str, Any],
    *errors: int,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, **_errors(401, *errors)}}
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str, fmt: str = "string") -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string", "format": fmt}}


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}


def _page(item: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "results": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "next": {"type": "string", "nullable": True},
        },
    }


def schema() -> dict[str, Any]:
    job = {"$ref": "#/components/schemas/Job"}
    asset = {"$ref": "#/components/schemas/Asset"}
    project = {"$ref": "#/components/schemas/Project"}
    decision = {"type": "string", "enum": ["approve", "reject", "changes_requested"]}
    review = {
        "type": "object",
        "properties": {
            "decision": decision,
            "comment": {"type": "string"},
            "by": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
        },
    }
    comment = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "text": {"type": "string"},
            "by": {"type": "string"},
            "at": {"type": "string", "format": "date-time"},
        },
    }
    slug, job_id, asset_id = _path_param("slug"), _path_param("id", "uuid"), _path_param("id", "uuid")
    later = {"summary": "Not offered by this installation yet", "responses": _errors(401, 501)}
    return {
        "openapi": "3.0.3",
        "info": {"title": "Studio API", "version": "1"},
        "servers": [{"url": "/api/v1"}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "sessionid"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {"type": "string"},
                        "errors": {
                            "type": "object",
                            "additionalProperties": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                },
                "Project": {
                    "type": "object",
                    "properties": {
                        "slug": {"type": "string"},
                        "name": {"type": "string"},
                        "role": {"type": "string", "enum": ["lead", "artist", "viewer"]},
                    },
                },
                "Model": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "name": {"type": "string"},
                        "family": {"type": "string"},
                        "default_width": {"type": "integer"},
                        "default_height": {"type": "integer"},
                        "default_steps": {"type": "integer"},
                        "default_guidance": {"type": "number"},
                        "default_scheduler": {"type": "string"},
                        "min_size": {"type": "integer"},
                        "max_size": {"type": "integer"},
                        "schedulers": {"type": "array", "items": {"type": "string"}},
                        "modes": {"type": "array", "items": {"type": "string"}},
                        "loras": {
                            "type": "array",
                            "description": "The installed LoRAs of the model's family.",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "id": {"type": "string"},
                                    "name": {"type": "string"},
                                    "family": {"type": "string"},
                                },
                            },
                        },
                    },
                },
                "JobCreate": {
                    "type": "object",
                    "required": ["prompt"],
                    "additionalProperties": False,
                    "properties": {
                        "prompt": {"type": "string", "minLength": 1, "maxLength": 2000},
                        "negative_prompt": {"type": "string", "maxLength": 2000},
                        "model": {"type": "string"},
                        "width": {"type": "integer", "multipleOf": 8},
                        "height": {"type": "integer", "multipleOf": 8},
                        "steps": {"type": "integer", "minimum": 1, "maximum": 150},
                        "guidance_scale": {"type": "number", "minimum": 0, "maximum": 30},
                        "seed": {"type": "integer", "minimum": 0, "maximum": 4294967295},
                        "scheduler": {"type": "string"},
                        "num_images": {"type": "integer", "minimum": 1, "maximum": 8},
                        "loras": {
                            "type": "array",
                            "maxItems": 5,
                            "description": "LoRAs of the model's family (GET /models), each once, applied "
                            "for this job only",
                            "items": {
                                "type": "object",
                                "required": ["id"],
                                "properties": {
                                    "id": {"type": "string"},
                                    "weight": {"type": "number", "minimum": -2, "maximum": 2, "default": 1},
                                },
                            },
                        },
                        "mode": {
                            "type": "string",
                            "enum": ["txt2img", "img2img", "inpaint", "variation", "upscale"],
                            "default": "txt2img",
                        },
                        "init_asset": {
                            "type": "string",
                            "format": "uuid",
                            "description": "The start image: an asset of the same project (every mode but "
                            "txt2img). Size defaults to its size, fitted to the model's limits",
                        },
                        "mask": {
                            "type": "string",
                            "description": "inpaint: a PNG data URL (data:image/png;base64,...), white = "
                            "repaint; resized to the start image",
                        },
                        "strength": {
                            "type": "number",
                            "minimum": 0,
                            "maximum": 1,
                            "description": "How much of the start image is repainted (img2img 0.6, inpaint "
                            "0.85, variation subtle 0.3 / strong 0.6, upscale 0.3)",
                        },
                        "variation": {"type": "string", "enum": ["subtle", "strong"], "default": "subtle"},
                        "scale": {
                            "type": "integer",
                            "enum": [2, 4],
                            "default": 2,
                            "description": "upscale: the size is the start image's times this",
                        },
                    },
                },
                "Job": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "project": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["queued", "running", "succeeded", "failed", "canceled"],
                        },
                        "model": {"type": "string"},
                        "params": {"type": "object"},
                        "progress": {
                            "type": "object",
                            "properties": {"step": {"type": "integer"}, "total": {"type": "integer"}},
                        },
                        "queue_position": {"type": "integer", "nullable": True},
                        "created_by": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "started_at": {"type": "string", "format": "date-time", "nullable": True},
                        "finished_at": {"type": "string", "format": "date-time", "nullable": True},
                        "assets": {"type": "array", "items": asset},
                        "error": {"type": "string", "nullable": True},
                    },
                },
                "Asset": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "project": {"type": "string"},
                        "job": {"type": "string", "format": "uuid", "nullable": True},
                        "image_url": {"type": "string"},
                        "thumbnail_url": {"type": "string"},
                        "page_url": {"type": "string"},
                        "width": {"type": "integer"},
                        "height": {"type": "integer"},
                        "seed": {"type": "integer"},
                        "prompt": {"type": "string"},
                        "negative_prompt": {"type": "string"},
                        "params": {"type": "object"},
                        "model": {"type": "string"},
                        "model_name": {"type": "string"},
                        "model_sha256": {"type": "string"},
                        "status": {
                            "type": "string",
                            "enum": ["draft", "submitted", "approved", "rejected", "changes_requested"],
                        },
                        "created_by": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"},
                        "kind": {"type": "string", "enum": ["generated", "upload"]},
                        "parent": {
                            "type": "string",
                            "format": "uuid",
                            "nullable": True,
                            "description": "The asset it was made from (image-based modes)",
                        },
                        "mask_url": {
                            "type": "string",
                            "nullable": True,
                            "description": "The inpainting mask it was made with (PNG, white = repainted)",
                        },
                        "credentials": {
                            "type": "string",
                            "enum": ["signed", "unsigned", "none"],
                            "description": "Whether the PNG carries the studio's Content Credentials "
                            "(unsigned: signing failed; none: an upload, or made before signing or with "
                            "it off)",
                        },
                        "sha256": {"type": "string", "description": "The stored PNG's sha256 (may be empty)"},
                    },
                },
            },
        },
        "security": [{"bearer": []}, {"session": []}],
        "paths": {
            "/openapi.json": {
                "get": _op("This schema", {"200": _response("The schema", {"type": "object"})})
            },
            "/me": {
                "get": _op(
                    "The caller and their projects",
                    {
                        "200": _response(
                            "Me",
                            {
                                "type": "object",
                                "properties": {
                                    "username": {"type": "string"},
                                    "is_admin": {"type": "boolean"},
                                    "projects": {"type": "array", "items": project},
                                },
                            },
                        )
                    },
                )
            },
            "/me/quota": {"get": later},
            "/models": {
                "get": _op(
                    "Installed models",
                    {
                        "200": _response(
                            "Models", {"type": "array", "items": {"$ref": "#/components/schemas/Model"}}
                        )
                    },
                )
            },
            "/projects": {
                "get": _op(
                    "Projects the caller belongs to (admins: all)",
                    {"200": _response("Projects", {"type": "array", "items": project})},
                ),
                "post": _op(
                    "Create a project; the caller becomes its lead",
                    {"201": _response("Created", project)},
                    400,
                    403,
                    body={"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                ),
            },
            "/projects/{slug}/members": {
                "post": _op(
                    "Add a member or change their role",
                    {"201": _response("Member", {"type": "object"})},
                    400,
                    403,
                    404,
                    409,
                    params=[slug],
                    body={
                        "type": "object",
                        "required": ["username", "role"],
                        "properties": {
                            "username": {"type": "string"},
                            "role": {"type": "string", "enum": ["lead", "artist", "viewer"]},
                        },
                    },
                )
            },
            "/projects/{slug}/members/{username}": {
                "patch": _op(
                    "Change a member's role (409 when it would leave the project without a lead)",
                    {
                        "200": _response(
                            "Member",
                            {
                                "type": "object",
                                "properties": {
                                    "username": {"type": "string"},
                                    "role": {"type": "string", "enum": ["lead", "artist", "viewer"]},
                                    "project": {"type": "string"},
                                },
                            },
                        )
                    },
                    400,
                    403,
                    404,
                    409,
                    params=[slug, _path_param("username")],
                    body={
                        "type": "object",
                        "required": ["role"],
                        "properties": {"role": {"type": "string", "enum": ["lead", "artist", "viewer"]}},
                    },
                ),
                "delete": _op(
                    "Remove a member (409 for the project's last lead)",
                    {"204": _response("Removed")},
                    403,
                    404,
                    409,
                    params=[slug, _path_param("username")],
                ),
            },
            "/projects/{slug}/jobs": {
                "get": _op(
                    "Recent jobs, newest first",
                    {"200": _response("Jobs", _page("Job"))},
                    400,
                    404,
                    params=[slug, _query("cursor")],
                ),
                "post": _op(
                    "Create a job",
                    {"201": _response("The queued job", job)},
                    400,
                    403,
                    404,
                    params=[slug],
                    body={"$ref": "#/components/schemas/JobCreate"},
                ),
            },
            "/projects/{slug}/assets": {
                "get": _op(
                    "Assets, newest first",
                    {"200": _response("Assets", _page("Asset"))},
                    400,
                    404,
                    params=[slug, _query("status"), _query("q"), _query("cursor")],
                )
            },
            "/projects/{slug}/export": {
                "get": _op(
                    "A streamed zip of the project's assets, each PNG with a JSON sidecar (provenance, file "
                    "sha256, review history). Leads and admins. No Content-Length: X-Studio-Export-Files and "
                    "X-Studio-Export-Bytes (an estimate) announce the size",
                    {
                        "200": {
                            "description": "The zip (attachment <slug>-<status>-<date>.zip)",
                            "content": {
                                "application/zip": {"schema": {"type": "string", "format": "binary"}}
                            },
                        }
                    },
                    400,
                    403,
                    404,
                    params=[
                        slug,
                        {
                            "name": "status",
                            "in": "query",
                            "required": False,
                            "description": "An asset status or all (default approved; all when ids is given)",
                            "schema": {"type": "string"},
                        },
                        {
                            "name": "ids",
                            "in": "query",
                            "required": False,
                            "description": "Comma-separated asset ids of this project: export only these",
                            "schema": {"type": "string"},
                        },
                    ],
                )
            },
            "/projects/{slug}/uploads": {
                "post": {
                    **_op(
                        "Upload an image (artists, leads, admins): a PNG, JPEG or WebP, stored again as a "
                        "plain PNG without metadata, usable as a start image. 400 for a file that is not "
                        "such an image or is too large (bytes or pixels)",
                        {"201": _response("Asset (kind upload)", asset)},
                        400,
                        403,
                        404,
                        params=[slug],
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["image"],
                                    "properties": {"image": {"type": "string", "format": "binary"}},
                                }
                            }
                        },
                    },
                }
            },
            "/projects/{slug}/quota": {"put": later},
            "/jobs/{id}": {"get": _op("A job", {"200": _response("Job", job)}, 404, params=[job_id])},
            "/jobs/{id}/cancel": {
                "post": _op("Cancel a job", {"202": _response("Job", job)}, 403, 404, 409, params=[job_id])
            },
            "/assets/{id}": {
                "get": _op(
                    "An asset, with its tags and whether the caller starred it",
                    {
                        "200": _response(
                            "Asset",
                            {
                                "allOf": [
                                    asset,
                                    {
                                        "properties": {
                                            "tags": {"type": "array", "items": {"type": "string"}},
                                            "favourite": {"type": "boolean"},
                                        }
                                    },
                                ]
                            },
                        )
                    },
                    404,
                    params=[asset_id],
                ),
                "delete": _op(
                    "Delete an asset with its image and thumbnail files; project websockets get "
                    "asset.deleted. Leads and admins",
                    {"204": _response("Deleted")},
                    403,
                    404,
                    params=[asset_id],
                ),
            },
            "/assets/{id}/thumbnail": {
                "get": _op(
                    "The asset's thumbnail: a JPEG of at most 256 px (the full PNG for older assets)",
                    {
                        "200": {
                            "description": "JPEG (or PNG) bytes",
                            "content": {
                                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                                "image/png": {"schema": {"type": "string", "format": "binary"}},
                            },
                        }
                    },
                    404,
                    params=[asset_id],
                )
            },
            "/assets/{id}/image": {
                "get": _op(
                    "The asset's PNG",
                    {
                        "200": {
                            "description": "PNG bytes",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        }
                    },
                    404,
                    params=[asset_id],
                )
            },
            "/assets/{id}/mask": {
                "get": _op(
                    "The inpainting mask the asset was made with (white = repainted); 404 when it has none",
                    {
                        "200": {
                            "description": "PNG bytes",
                            "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
                        }
                    },
                    404,
                    params=[asset_id],
                )
            },
            "/assets/{id}/review": {
                "post": _op(
                    "Decide on a submitted asset (leads and admins; 403 for other members). The decision is "
                    "kept in the history, the author is notified and project websockets get asset.reviewed. "
                    "409 unless the asset is submitted: of two leads deciding at once, one decision stands",
                    {"200": _response("The asset with its new status", asset)},
                    400,
                    403,
                    404,
                    409,
                    params=[asset_id],
                    body={
                        "type": "object",
                        "required": ["decision"],
                        "properties": {
                            "decision": decision,
                            "comment": {"type": "string", "maxLength": 5000},
                        },
                    },
                )
            },
            "/assets/{id}/submit": {
                "post": _op(
                    "Submit a draft (or an asset with changes requested) for review: its author while an "
                    "artist or lead, the project's leads and admins. 409 from any other status",
                    {"200": _response("The asset, now submitted", asset)},
                    403,
                    404,
                    409,
                    params=[asset_id],
                )
            },
            "/assets/{id}/reviews": {
                "get": _op(
                    "The decision history, oldest first",
                    {"200": _response("Decisions", {"type": "array", "items": review})},
                    404,
                    params=[asset_id],
                )
            },
            "/assets/{id}/comments": {
                "get": _op(
                    "Comments, oldest first",
                    {"200": _response("Comments", {"type": "array", "items": comment})},
                    404,
                    params=[asset_id],
                ),
                "post": _op(
                    "Comment on an asset (every member who sees it, viewers included)",
                    {"201": _response("The comment", comment)},
                    400,
                    404,
                    params=[asset_id],
                    body={
                        "type": "object",
                        "required": ["text"],
                        "properties": {"text": {"type": "string", "minLength": 1, "maxLength": 5000}},
                    },
                ),
            },
            **_collection_paths(slug, asset_id, asset),
            **_credentials_paths(),
            "/me/notifications": {
                "get": _op(
                    "The caller's latest 50 notifications, newest first, and the unread count",
                    {
                        "200": _response(
                            "Notifications",
                            {
                                "type": "object",
                                "properties": {
                                    "unread": {"type": "integer"},
                                    "results": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "id": {"type": "integer"},
                                                "kind": {"type": "string", "enum": ["asset.reviewed"]},
                                                "text": {"type": "string"},
                                                "asset": {"type": "string", "nullable": True},
                                                "project": {"type": "string"},
                                                "created_at": {"type": "string", "format": "date-time"},
                                                "read": {"type": "boolean"},
                                            },
                                        },
                                    },
                                },
                            },
                        )
                    },
                )
            },
            "/admin/users": {
                "get": _op(
                    "Every account with its use this calendar month (UTC). Site admins only: 404 for others",
                    {
                        "200": _response(
                            "Users",
                            {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "username": {"type": "string"},
                                        "is_active": {"type": "boolean"},
                                        "is_admin": {"type": "boolean"},
                                        "usage": {
                                            "type": "object",
                                            "properties": {
                                                "images": {"type": "integer"},
                                                "gpu_seconds": {"type": "number"},
                                            },
                                        },
                                    },
                                },
                            },
                        )
                    },
                    404,
                )
            },
            "/admin/users/{username}/quota": {"put": later},
            "/admin/users/{username}/deactivate": {
                "post": _op(
                    "Deactivate a user: their sessions, API tokens and open websockets end. Site admins only "
                    "(404 for others); 403 for the caller's own account",
                    {
                        "200": _response(
                            "The deactivated user",
                            {
                                "type": "object",
                                "properties": {
                                    "username": {"type": "string"},
                                    "is_active": {"type": "boolean", "enum": [False]},
                                },
                            },
                        )
                    },
                    403,
                    404,
                    params=[_path_param("username")],
                )
            },
            "/admin/audit": {
                "get": _op(
                    "Audit events, newest first. Site admins only: 404 for others. since/until take a date "
                    "(YYYY-MM-DD, whole days in the studio's time zone) or an ISO 8601 time",
                    {
                        "200": _response(
                            "Events",
                            {
                                "type": "object",
                                "properties": {
                                    "results": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "time": {"type": "string", "format": "date-time"},
                                                "actor": {"type": "string", "nullable": True},
                                                "action": {"type": "string"},
                                                "target": {"type": "string"},
                                                "project": {"type": "string", "nullable": True},
                                                "ip": {"type": "string", "nullable": True},
                                                "details": {"type": "object"},
                                            },
                                        },
                                    },
                                    "next": {"type": "string", "nullable": True},
                                },
                            },
                        )
                    },
                    400,
                    404,
                    params=[
                        _query("actor"),
                        {
                            "name": "action",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": list(ACTIONS)},
                        },
                        _query("project"),
                        _query("since"),
                        _query("until"),
                        _query("cursor"),
                    ],
                )
            },
        },
    }


def _credentials_paths() -> dict[str, Any]:
    """Content Credentials (gallery/api.py): the studio's root certificate and the verifier."""
    asset_ref = {
        "type": "object",
        "nullable": True,
        "properties": {
            k: {"type": "string"} for k in ("id", "project", "project_name", "status", "page_url")
        },
    }
    step = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "generator": {"type": "string"},
            "actions": {"type": "array", "items": {"type": "string"}},
            "source_type": {"type": "string", "nullable": True},
            "signed_by": {"type": "string"},
            "author": {"type": "string", "nullable": True},
            "project": {"type": "string", "nullable": True},
            "model": {"type": "object", "nullable": True},
            "parameters": {"type": "object", "nullable": True},
            "review": {"type": "object", "nullable": True},
            "review_summary": {"type": "string", "nullable": True},
            "asset": asset_ref,
        },
    }
    report = {
        "type": "object",
        "properties": {
            "credentials": {"type": "boolean"},
            "state": {"type": "string", "enum": ["trusted", "valid", "invalid", "none"]},
            "valid": {"type": "boolean"},
            "trusted": {"type": "boolean"},
            "summary": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}},
            "sha256": {"type": "string"},
            "made_by": {**step, "nullable": True},
            "chain": {"type": "array", "items": step},
            "match": asset_ref,
            "made_from": asset_ref,
        },
    }
    return {
        "/credentials/root.pem": {
            "get": _op(
                "The studio's Content Credentials root certificate (PEM), then roots it signed with before",
                {
                    "200": {
                        "description": "PEM certificates",
                        "content": {"application/x-pem-file": {"schema": {"type": "string"}}},
                    }
                },
            )
        },
        "/verify": {
            "post": {
                **_op(
                    "Read an image's Content Credentials (C2PA): valid and trusted or not, who and what made "
                    "it, its chain of edits (newest first), and the asset of a visible project it is "
                    "(match, by sha256) or was made from (chain[].asset, by its signed manifest). 400 for "
                    "a file that is not a PNG, JPEG or WebP image, or too large",
                    {"200": _response("What the credentials say", report)},
                    400,
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {"image": {"type": "string", "format": "binary"}},
                            }
                        }
                    },
                },
            }
        },
    }


def _collection_paths(
    slug: dict[str, Any], asset_id: dict[str, Any], asset: dict[str, Any]
) -> dict[str, Any]:
    """Boards, tags and favourites (gallery/api.py)."""
    board = {
        "type": "object",
        "properties": {
            "id": {"type": "integer"},
            "project": {"type": "string"},
            "name": {"type": "string"},
            "created_by": {"type": "string"},
            "created_at": {"type": "string", "format": "date-time"},
            "page_url": {"type": "string"},
            "items": {"type": "integer"},
        },
    }
    board_id = _path_param("id", "int64")
    board_id["schema"] = {"type": "integer"}

    def single(field: str, max_length: int) -> dict[str, Any]:
        return {
            "type": "object",
            "required": [field],
            "properties": {field: {"type": "string", "minLength": 1, "maxLength": max_length}},
        }

    asset_body = {"type": "object", "required": ["asset"], "properties": {"asset": {"type": "string"}}}
    tags = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}}}}
    favourite = {"type": "object", "properties": {"favourite": {"type": "boolean"}}}
    return {
        "/projects/{slug}/boards": {
            "get": _op(
                "The project's boards with their image counts (members)",
                {"200": _response("Boards", {"type": "array", "items": board})},
                404,
                params=[slug],
            ),
            "post": _op(
                "Create a board (artists, leads, admins); names are unique per project, case-insensitively",
                {"201": _response("The board", board)},
                400,
                403,
                404,
                params=[slug],
                body=single("name", 100),
            ),
        },
        "/boards/{id}": {
            "get": _op(
                "A board with its assets, most recently added first (members)",
                {
                    "200": _response(
                        "The board",
                        {"allOf": [board, {"properties": {"assets": {"type": "array", "items": asset}}}]},
                    )
                },
                404,
                params=[board_id],
            ),
            "delete": _op(
                "Delete a board, never its images (leads, admins)",
                {"204": _response("Deleted")},
                403,
                404,
                params=[board_id],
            ),
        },
        "/boards/{id}/items": {
            method: _op(
                summary,
                {"200": _response("The board", board)},
                400,
                403,
                404,
                params=[board_id],
                body=asset_body,
            )
            for method, summary in (
                ("post", "Put an image of the board's project on it (artists, leads, admins); idempotent"),
                ("delete", "Take an image off the board (artists, leads, admins)"),
            )
        },
        "/assets/{id}/tags": {
            method: _op(
                summary,
                {"200": _response("The asset's tags", tags)},
                400,
                403,
                404,
                params=[asset_id],
                body=single("tag", 50),
            )
            for method, summary in (
                ("post", "Tag an asset (artists, leads, admins); tags are lowercased and shared per project"),
                ("delete", "Remove a tag from an asset (artists, leads, admins)"),
            )
        },
        "/assets/{id}/favourite": {
            method: _op(summary, {"200": _response("The caller's star", favourite)}, 404, params=[asset_id])
            for method, summary in (
                ("post", "Star an asset for the caller alone (every member, viewers included)"),
                ("delete", "Remove the caller's star"),
            )
        },
    }
