"""``/api/v1/`` operations for assets: images and their files, uploads, reviews, comments, notifications,
boards, tags, favourites and exports."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from ninja import File, Query, Status, UploadedFile
from pydantic import Field

from studio.api import visible_project
from studio.audit import client_ip
from studio.boundary import StudioRouter, answers, guarded, no_content
from studio.errors import NotAllowed
from studio.fields import Slug
from studio.pagination import keyset_page
from studio.shortcuts import get_visible_or_404

from . import credentials, permissions, provenance, services
from .curation import is_favourite
from .models import Asset, Board, Notification
from .permissions import boards_visible_to
from .queries import filtered_assets
from .schemas import (
    AssetDetailOut,
    AssetOut,
    AssetPage,
    AssetQuery,
    BoardDetailOut,
    BoardIn,
    BoardItemIn,
    BoardOut,
    CommentIn,
    CommentOut,
    ExportQuery,
    FavouriteOut,
    NotificationsOut,
    ReviewIn,
    ReviewOut,
    TagIn,
    TagsOut,
    VerifyOut,
)
from .serializers import asset_to_dict, board_to_dict, comment_to_dict, notification_to_dict, review_to_dict
from .views import (
    asset_or_404,
    control_map_response,
    export_response,
    image_response,
    mask_response,
    thumbnail_response,
)

PAGE_SIZE = 30
BoardId = Annotated[int, Field(ge=1, le=2**63 - 1)]
NOTIFICATIONS_PAGE = 50

router = StudioRouter(tags=["gallery"])


def _file(media_type: str, description: str) -> dict[str, Any]:
    """How a file answer is described in the schema (ninja describes JSON answers itself)."""
    binary = {media_type: {"schema": {"type": "string", "format": "binary"}}}
    return {
        "parameters": [
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "description": (
                    "One byte range: `bytes=first-last`, `bytes=first-` or `bytes=-count`; any other value "
                    "is ignored (the whole file), as HTTP says."
                ),
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {"description": description, "content": binary},
            "206": {"description": "The byte range asked for (`Content-Range` names it).", "content": binary},
            "416": {"description": "The range lies outside the file (`Content-Range: bytes */size`)."},
        },
    }


# --- guards --


def visible_asset(request: HttpRequest, id: uuid.UUID, **_: Any) -> Asset:
    """Guard: an image of a project the caller sees, else 404."""
    return asset_or_404(request.user, str(id))


def reviewable_asset(request: HttpRequest, id: uuid.UUID, **_: Any) -> Asset:
    asset = visible_asset(request, id)
    if not permissions.can_review(request.user, asset):
        raise NotAllowed("Only the project's leads and site admins may review images.")
    return asset


def curated_asset(request: HttpRequest, id: uuid.UUID, **_: Any) -> Asset:
    asset = visible_asset(request, id)
    services.check_curate(request.user, asset.project)
    return asset


def deletable_asset(request: HttpRequest, id: uuid.UUID, **_: Any) -> Asset:
    asset = visible_asset(request, id)
    if request.method == "DELETE":
        services.check_delete_asset(request.user, asset)
    return asset


def visible_board(request: HttpRequest, id: int, **_: Any) -> Board:
    return get_visible_or_404(boards_visible_to(request.user).select_related("project", "created_by"), id=id)


def curated_board(request: HttpRequest, id: int, **_: Any) -> Board:
    board = visible_board(request, id)
    services.check_curate(request.user, board.project)
    return board


def curating_project(request: HttpRequest, slug: str, **_: Any) -> Any:
    project = visible_project(request, slug)
    if request.method == "POST":
        services.check_curate(request.user, project)
    return project


def uploading_project(request: HttpRequest, slug: str, **_: Any) -> Any:
    project = visible_project(request, slug)
    services.check_upload(request.user, project)
    return project


def exporting_project(request: HttpRequest, slug: str, **_: Any) -> Any:
    project = visible_project(request, slug)
    if not permissions.can_export(request.user, project):
        raise NotAllowed("Only the project's leads and site admins may export images.")
    return project


# --- images --


@router.get(
    "/projects/{slug:slug}/assets",
    response=answers({200: AssetPage}, 400, 404),
    guard=visible_project,
    url_name="api-project-assets",
)
def list_assets(request: HttpRequest, slug: Slug, filters: Query[AssetQuery]) -> dict[str, Any]:
    """The project's images, newest first (or oldest), filtered and searched."""
    queryset, cleaned = filtered_assets(request.user, guarded(request), filters)
    cleaned.raise_if_invalid()
    page, next_cursor = keyset_page(queryset, filters.cursor, PAGE_SIZE, descending=cleaned.descending)
    return {"results": [asset_to_dict(a) for a in page], "next": next_cursor}


@router.post(
    "/projects/{slug:slug}/uploads",
    response=answers({201: AssetOut}, 400, 404, 413),
    guard=uploading_project,
    url_name="api-project-uploads",
)
def upload(request: HttpRequest, slug: Slug, image: File[UploadedFile]) -> Status:
    """A PNG, JPEG or WebP image as a start image for the generation modes (stored as a plain PNG)."""
    asset = services.do_upload_image(request.user, guarded(request), image, ip=client_ip(request))
    return Status(201, asset_to_dict(asset))


@router.get(
    "/assets/{uuid:id}",
    response=answers({200: AssetDetailOut}, 404),
    guard=deletable_asset,
    url_name="api-asset",
)
def asset_detail(request: HttpRequest, id: uuid.UUID) -> dict[str, Any]:
    """The image with its tags and whether the caller starred it."""
    asset = guarded(request)
    return {
        **asset_to_dict(asset),
        "tags": list(asset.tags.values_list("name", flat=True)),
        "favourite": is_favourite(request.user, asset),
    }


@router.delete("/assets/{uuid:id}", response=answers({204: None}, 404), guard=deletable_asset)
def asset_delete(request: HttpRequest, id: uuid.UUID) -> HttpResponse:
    """Delete the image and its files (leads and admins)."""
    services.do_delete_asset(request.user, guarded(request), ip=client_ip(request))
    return no_content()


@router.get(
    "/assets/{uuid:id}/image",
    response=answers({200: None}, 404),
    guard=visible_asset,
    url_name="api-asset-image",
    openapi_extra=_file("image/png", "The PNG, with its provenance in text chunks."),
)
def asset_image(request: HttpRequest, id: uuid.UUID) -> HttpResponseBase:
    return image_response(request, guarded(request))


@router.get(
    "/assets/{uuid:id}/thumbnail",
    response=answers({200: None}, 404),
    guard=visible_asset,
    url_name="api-asset-thumbnail",
    openapi_extra={
        "responses": {
            "200": {
                "description": "A JPEG of at most 256 px (the PNG for images made before thumbnails).",
                "content": {
                    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                    "image/png": {"schema": {"type": "string", "format": "binary"}},
                },
            }
        }
    },
)
def asset_thumbnail(request: HttpRequest, id: uuid.UUID) -> HttpResponseBase:
    return thumbnail_response(request, guarded(request))


@router.get(
    "/assets/{uuid:id}/mask",
    response=answers({200: None}, 404),
    guard=visible_asset,
    url_name="api-asset-mask",
    openapi_extra=_file("image/png", "The inpainting mask the image was made with (white = repainted)."),
)
def asset_mask(request: HttpRequest, id: uuid.UUID) -> HttpResponseBase:
    return mask_response(request, guarded(request))


@router.get(
    "/assets/{uuid:id}/controls/{int:unit}",
    response=answers({200: None}, 404),
    guard=visible_asset,
    url_name="api-asset-control-map",
    openapi_extra=_file(
        "image/png",
        "The control map ControlNet unit `unit` (its index in the job's controlnets) steered the image with.",
    ),
)
def asset_control_map(request: HttpRequest, id: uuid.UUID, unit: int) -> HttpResponseBase:
    return control_map_response(request, guarded(request), unit)


@router.get(
    "/projects/{slug:slug}/export",
    response=answers({200: None}, 400, 404),
    guard=exporting_project,
    url_name="api-project-export",
    openapi_extra=_file("application/zip", "A streamed zip: each PNG with a JSON sidecar."),
)
def export(request: HttpRequest, slug: Slug, query: Query[ExportQuery]) -> StreamingHttpResponse:
    """The project's images of a status (default approved), or a selection, as a streamed zip."""
    plan = services.check_export(request.user, guarded(request), query.status, query.ids)
    services.do_record_export(request.user, plan, ip=client_ip(request))
    return export_response(request, plan)


# --- Content Credentials --


@router.get(
    "/credentials/root.pem",
    response=answers({200: None}),
    url_name="api-credentials-root",
    openapi_extra=_file(
        "application/x-pem-file", "The studio's root certificate, then the roots it used before."
    ),
)
def credentials_root(request: HttpRequest) -> HttpResponse:
    """The studio's signing root (PEM), for other tools to trust the studio's Content Credentials."""
    response = HttpResponse(credentials.published_roots_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="studio-root.pem"'
    return response


@router.post("/verify", response=answers({200: VerifyOut}, 413), url_name="api-verify")
def verify(request: HttpRequest, image: File[UploadedFile]) -> dict[str, Any]:
    """Multipart ``image``: what its Content Credentials say (valid, trusted by the studio's root, who and
    what made it, its chain of edits) and whether it is an image of a project the caller sees."""
    return provenance.verify(request.user, provenance.read_upload(image))


# --- reviews, comments, notifications --


@router.post(
    "/assets/{uuid:id}/submit",
    response=answers({200: AssetOut}, 404, 409),
    guard=visible_asset,
    url_name="api-asset-submit",
)
def asset_submit(request: HttpRequest, id: uuid.UUID) -> dict[str, Any]:
    """Submit a draft (or an image with changes requested) for review: its author, leads, admins."""
    return asset_to_dict(services.do_submit(request.user, guarded(request)))


@router.post(
    "/assets/{uuid:id}/review",
    response=answers({200: AssetOut}, 400, 404, 409),
    guard=reviewable_asset,
    url_name="api-asset-review",
)
def asset_review(request: HttpRequest, id: uuid.UUID, payload: ReviewIn) -> dict[str, Any]:
    """Decide on a submitted image; 409 when it is not (or no longer) submitted."""
    asset, _ = services.do_review(
        request.user, guarded(request), payload.decision, payload.comment or "", ip=client_ip(request)
    )
    return asset_to_dict(asset)


@router.get(
    "/assets/{uuid:id}/reviews",
    response=answers({200: list[ReviewOut]}, 404),
    guard=visible_asset,
    url_name="api-asset-reviews",
)
def asset_reviews(request: HttpRequest, id: uuid.UUID) -> list[dict[str, Any]]:
    return [review_to_dict(r) for r in guarded(request).reviews.select_related("by")]


@router.get(
    "/assets/{uuid:id}/comments",
    response=answers({200: list[CommentOut]}, 404),
    guard=visible_asset,
    url_name="api-asset-comments",
)
def asset_comments(request: HttpRequest, id: uuid.UUID) -> list[dict[str, Any]]:
    return [comment_to_dict(c) for c in guarded(request).comments.select_related("author")]


@router.post("/assets/{uuid:id}/comments", response=answers({201: CommentOut}, 400, 404), guard=visible_asset)
def asset_comment(request: HttpRequest, id: uuid.UUID, payload: CommentIn) -> Status:
    """Every member, viewers included, may comment."""
    return Status(201, comment_to_dict(services.do_comment(request.user, guarded(request), payload.text)))


@router.get("/me/notifications", response=answers({200: NotificationsOut}), url_name="api-me-notifications")
def me_notifications(request: HttpRequest) -> dict[str, Any]:
    """The caller's latest notifications, newest first, and how many are unread."""
    signed_in: Any = request.user  # the operation's auth let only a signed-in user through
    mine = Notification.objects.filter(user=signed_in)
    latest = mine.select_related("project")[:NOTIFICATIONS_PAGE]
    return {
        "unread": mine.filter(read_at__isnull=True).count(),
        "results": [notification_to_dict(n) for n in latest],
    }


# --- boards, tags, favourites --


@router.get(
    "/projects/{slug:slug}/boards",
    response=answers({200: list[BoardOut]}, 404),
    guard=curating_project,
    url_name="api-project-boards",
)
def list_boards(request: HttpRequest, slug: Slug) -> list[dict[str, Any]]:
    """The project's boards with their image counts."""
    boards = (
        guarded(request).boards.select_related("project", "created_by").annotate(item_count=Count("items"))
    )
    return [board_to_dict(b, items=b.item_count) for b in boards]


@router.post(
    "/projects/{slug:slug}/boards", response=answers({201: BoardOut}, 400, 404), guard=curating_project
)
def create_board(request: HttpRequest, slug: Slug, payload: BoardIn) -> Status:
    """A new board (artists, leads, admins); 400 when the project has one of that name."""
    board = services.do_create_board(request.user, guarded(request), payload.name)
    return Status(201, board_to_dict(board, items=0))


@router.get(
    "/boards/{int:id}",
    response=answers({200: BoardDetailOut}, 404),
    guard=visible_board,
    url_name="api-board",
)
def board_detail(request: HttpRequest, id: BoardId) -> dict[str, Any]:
    """A board with its images, most recently added first."""
    board = guarded(request)
    assets = list(
        Asset.objects.filter(board_items__board=board)
        .select_related("project", "created_by")
        .order_by("-board_items__added_at", "-id")
    )
    return {**board_to_dict(board, items=len(assets)), "assets": [asset_to_dict(a) for a in assets]}


@router.delete("/boards/{int:id}", response=answers({204: None}, 404), guard=visible_board)
def board_delete(request: HttpRequest, id: BoardId) -> HttpResponse:
    """Delete a board (leads and admins); its images stay."""
    services.do_delete_board(request.user, guarded(request))
    return no_content()


@router.post(
    "/boards/{int:id}/items",
    response=answers({200: BoardOut}, 400, 404),
    guard=curated_board,
    url_name="api-board-items",
)
def board_add(request: HttpRequest, id: BoardId, payload: BoardItemIn) -> dict[str, Any]:
    """Put one of the project's images on the board (adding it twice is harmless)."""
    board = guarded(request)
    services.do_add_to_board(request.user, board, payload.asset)
    return board_to_dict(board, items=board.items.count())


@router.delete("/boards/{int:id}/items", response=answers({200: BoardOut}, 400, 404), guard=curated_board)
def board_take_off(request: HttpRequest, id: BoardId, payload: BoardItemIn) -> dict[str, Any]:
    board = guarded(request)
    services.do_remove_from_board(request.user, board, payload.asset)
    return board_to_dict(board, items=board.items.count())


@router.post(
    "/assets/{uuid:id}/tags",
    response=answers({200: TagsOut}, 400, 404),
    guard=curated_asset,
    url_name="api-asset-tags",
)
def asset_tag(request: HttpRequest, id: uuid.UUID, payload: TagIn) -> dict[str, Any]:
    """Tag the image (tags are lowercased and shared in the project); answers its tags."""
    asset = guarded(request)
    services.do_tag(request.user, asset, payload.tag)
    return {"tags": list(asset.tags.values_list("name", flat=True))}


@router.delete("/assets/{uuid:id}/tags", response=answers({200: TagsOut}, 400, 404), guard=curated_asset)
def asset_untag(request: HttpRequest, id: uuid.UUID, payload: TagIn) -> dict[str, Any]:
    asset = guarded(request)
    services.do_untag(request.user, asset, payload.tag)
    return {"tags": list(asset.tags.values_list("name", flat=True))}


@router.post(
    "/assets/{uuid:id}/favourite",
    response=answers({200: FavouriteOut}, 404),
    guard=visible_asset,
    url_name="api-asset-favourite",
)
def asset_favourite(request: HttpRequest, id: uuid.UUID) -> dict[str, Any]:
    """Star the image for the caller alone (viewers too)."""
    services.do_favourite(request.user, guarded(request))
    return {"favourite": True}


@router.delete("/assets/{uuid:id}/favourite", response=answers({200: FavouriteOut}, 404), guard=visible_asset)
def asset_unfavourite(request: HttpRequest, id: uuid.UUID) -> dict[str, Any]:
    services.do_unfavourite(request.user, guarded(request))
    return {"favourite": False}
