"""The public shape of an asset (shared/API.md)."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.urls import get_script_prefix, get_urlconf, reverse

from .models import Asset, Board, Comment, Notification, Review

_PLACEHOLDER = str(uuid.UUID(int=0))
_patterns: dict[tuple[str, str, str], str] = {}


def asset_url(name: str, asset_id: Any) -> str:
    """``reverse(name, args=[asset_id])`` for a route whose only argument is the asset's UUID, at the cost
    of a string replace: the route is reversed once per URLconf and script prefix. (Three ``reverse`` calls
    per asset were a fifth of the assets API page's time.)"""
    key = (name, str(get_urlconf() or settings.ROOT_URLCONF), get_script_prefix())
    pattern = _patterns.get(key)
    if pattern is None:
        pattern = _patterns[key] = reverse(name, args=[_PLACEHOLDER])
    return pattern.replace(_PLACEHOLDER, str(asset_id))


def asset_to_dict(asset: Asset) -> dict[str, Any]:
    return {
        "id": str(asset.id),
        "project": asset.project.slug,
        "job": str(asset.job_id) if asset.job_id else None,
        "image_url": asset_url("api-asset-image", asset.id),
        "thumbnail_url": asset_url("api-asset-thumbnail", asset.id),
        "page_url": asset_url("asset", asset.id),
        "width": asset.width,
        "height": asset.height,
        "seed": asset.seed,
        "prompt": asset.prompt,
        "negative_prompt": asset.negative_prompt,
        "params": asset.params,
        "model": asset.model_id,
        "model_name": asset.model_name,
        "model_sha256": asset.model_sha256,
        "status": asset.status,
        "created_by": asset.created_by.username,
        "created_at": asset.created_at.isoformat(),
        "kind": asset.kind,
        "parent": str(asset.parent_id) if asset.parent_id else None,
        "mask_url": asset_url("api-asset-mask", asset.id) if asset.mask else None,
        "control_map_urls": control_map_urls(asset),
        "credentials": asset.credentials,
        "sha256": asset.sha256,
    }


def control_map_urls(asset: Asset) -> list[str]:
    """The API URLs of the control maps the image's ControlNet units steered with, in unit order (from its
    parameters: no query)."""
    units = asset.params.get("controlnets") if isinstance(asset.params, dict) else None
    if not units:
        return []
    base = asset_url("api-asset", asset.id).rstrip("/")
    return [f"{base}/controls/{index}" for index, unit in enumerate(units) if unit.get("map_sha256")]


def review_to_dict(review: Review) -> dict[str, Any]:
    return {
        "decision": review.decision,
        "comment": review.comment,
        "by": review.by.username,
        "at": review.at.isoformat(),
    }


def comment_to_dict(comment: Comment) -> dict[str, Any]:
    return {
        "id": comment.pk,
        "text": comment.text,
        "by": comment.author.username,
        "at": comment.created_at.isoformat(),
    }


def notification_to_dict(notification: Notification) -> dict[str, Any]:
    return {
        "id": notification.pk,
        "kind": notification.kind,
        "text": notification.text,
        "asset": str(notification.asset_id) if notification.asset_id else None,
        "project": notification.project.slug,
        "created_at": notification.created_at.isoformat(),
        "read": notification.read_at is not None,
    }


def board_to_dict(board: Board, *, items: int | None = None) -> dict[str, Any]:
    """A board; ``items`` (its image count) when the caller annotated or counted it."""
    data: dict[str, Any] = {
        "id": board.pk,
        "project": board.project.slug,
        "name": board.name,
        "created_by": board.created_by.username,
        "created_at": board.created_at.isoformat(),
        "page_url": reverse("board", args=[board.pk]),
    }
    if items is not None:
        data["items"] = items
    return data
