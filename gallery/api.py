"""``/api/v1/`` endpoints for assets."""

from __future__ import annotations

from typing import Any

from django.db.models import Count
from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404

from studio.api_utils import api, json_body
from studio.audit import client_ip
from studio.pagination import keyset_page
from studio.permissions import projects_visible_to
from studio.shortcuts import get_visible_or_404

from . import credentials, provenance, services
from .curation import is_favourite
from .models import Asset, Board, Notification
from .permissions import boards_visible_to
from .queries import filtered_assets
from .serializers import asset_to_dict, board_to_dict, comment_to_dict, notification_to_dict, review_to_dict
from .views import asset_or_404, export_response, image_response, mask_response, thumbnail_response

PAGE_SIZE = 30
NOTIFICATIONS_PAGE = 50


@api(["GET"])
def project_assets(request: HttpRequest, slug: str) -> tuple[int, Any]:
    project = get_object_or_404(projects_visible_to(request.user), slug=slug)
    queryset, cleaned = filtered_assets(request.user, project, request.GET)
    cleaned.raise_if_invalid()
    page, next_cursor = keyset_page(
        queryset, request.GET.get("cursor"), PAGE_SIZE, descending=cleaned.descending
    )
    return 200, {"results": [asset_to_dict(a) for a in page], "next": next_cursor}


@api(["GET", "DELETE"])
def asset_detail(request: HttpRequest, asset_id: str) -> tuple[int, Any] | HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    if request.method == "DELETE":
        services.do_delete_asset(request.user, asset, ip=client_ip(request))
        return HttpResponse(status=204)
    return 200, _asset_detail(request, asset)


def _asset_detail(request: HttpRequest, asset: Asset) -> dict[str, Any]:
    """The asset with its tags and the caller's star (two small queries: only on the detail endpoint, so the
    list stays at a constant query count)."""
    return {
        **asset_to_dict(asset),
        "tags": list(asset.tags.values_list("name", flat=True)),
        "favourite": is_favourite(request.user, asset),
    }


@api(["GET"])
def asset_image(request: HttpRequest, asset_id: str) -> FileResponse:
    return image_response(asset_or_404(request.user, asset_id))


@api(["GET"])
def asset_thumbnail(request: HttpRequest, asset_id: str) -> FileResponse:
    return thumbnail_response(asset_or_404(request.user, asset_id))


@api(["GET"])
def asset_mask(request: HttpRequest, asset_id: str) -> FileResponse:
    return mask_response(asset_or_404(request.user, asset_id))


@api(["GET"])
def credentials_root(request: HttpRequest) -> HttpResponse:
    """The studio's root certificate (PEM; then roots it signed with before), for other tools to trust."""
    response = HttpResponse(credentials.published_roots_pem(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'inline; filename="studio-root.pem"'
    return response


@api(["POST"])
def verify(request: HttpRequest) -> tuple[int, Any]:
    """Multipart ``image``: what its Content Credentials say, and the visible asset it is or was made from."""
    return 200, provenance.verify(request.user, provenance.read_upload(request.FILES.get("image")))


@api(["GET"])
def project_export(request: HttpRequest, slug: str) -> StreamingHttpResponse:
    """A streamed zip of the project's assets with a JSON sidecar each (leads and admins)."""
    project = get_object_or_404(projects_visible_to(request.user), slug=slug)
    plan = services.check_export(request.user, project, request.GET.get("status"), request.GET.get("ids"))
    services.do_record_export(request.user, plan, ip=client_ip(request))
    return export_response(request, plan)


@api(["POST"])
def asset_submit(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    asset = services.do_submit(request.user, asset_or_404(request.user, asset_id))
    return 200, asset_to_dict(asset)


@api(["POST"])
def asset_review(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    asset = asset_or_404(request.user, asset_id)
    body = json_body(request)
    asset, _ = services.do_review(
        request.user, asset, body.get("decision"), body.get("comment", ""), ip=client_ip(request)
    )
    return 200, asset_to_dict(asset)


@api(["GET"])
def asset_reviews(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    asset = asset_or_404(request.user, asset_id)
    return 200, [review_to_dict(r) for r in asset.reviews.select_related("by")]


@api(["GET", "POST"])
def asset_comments(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    asset = asset_or_404(request.user, asset_id)
    if request.method == "POST":
        comment = services.do_comment(request.user, asset, json_body(request).get("text"))
        return 201, comment_to_dict(comment)
    return 200, [comment_to_dict(c) for c in asset.comments.select_related("author")]


@api(["GET"])
def me_notifications(request: HttpRequest) -> tuple[int, Any]:
    """The caller's latest notifications, newest first, and how many are unread."""
    signed_in: Any = request.user  # signed in: the decorator checked
    mine = Notification.objects.filter(user=signed_in)
    latest = mine.select_related("project")[:NOTIFICATIONS_PAGE]
    return 200, {
        "unread": mine.filter(read_at__isnull=True).count(),
        "results": [notification_to_dict(n) for n in latest],
    }


# --- boards, tags, favourites --


def _board_or_404(request: HttpRequest, board_id: int) -> Board:
    return get_visible_or_404(
        boards_visible_to(request.user).select_related("project", "created_by"), id=board_id
    )


@api(["GET", "POST"])
def project_boards(request: HttpRequest, slug: str) -> tuple[int, Any]:
    """The project's boards with their image counts (members); POST ``{"name"}`` creates one (artists,
    leads, admins)."""
    project = get_object_or_404(projects_visible_to(request.user), slug=slug)
    if request.method == "POST":
        board = services.do_create_board(request.user, project, json_body(request).get("name"))
        return 201, board_to_dict(board, items=0)
    boards = project.boards.select_related("project", "created_by").annotate(item_count=Count("items"))
    return 200, [board_to_dict(b, items=b.item_count) for b in boards]


@api(["GET", "DELETE"])
def board_detail(request: HttpRequest, board_id: int) -> tuple[int, Any] | HttpResponse:
    """A board with its assets, most recently added first; DELETE for leads and admins."""
    board = _board_or_404(request, board_id)
    if request.method == "DELETE":
        services.do_delete_board(request.user, board)
        return HttpResponse(status=204)
    assets = list(
        Asset.objects.filter(board_items__board=board)
        .select_related("project", "created_by")
        .order_by("-board_items__added_at", "-id")
    )
    return 200, {**board_to_dict(board, items=len(assets)), "assets": [asset_to_dict(a) for a in assets]}


@api(["POST", "DELETE"])
def board_items(request: HttpRequest, board_id: int) -> tuple[int, Any]:
    """``{"asset": id}``: put one of the project's images on the board (POST) or take it off (DELETE)."""
    board = _board_or_404(request, board_id)
    asset = json_body(request).get("asset")
    if request.method == "POST":
        services.do_add_to_board(request.user, board, asset)
    else:
        services.do_remove_from_board(request.user, board, asset)
    return 200, board_to_dict(board, items=board.items.count())


@api(["POST", "DELETE"])
def asset_tags(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    """``{"tag": name}``: tag the asset (POST) or untag it (DELETE); answers the asset's tags."""
    asset = asset_or_404(request.user, asset_id)
    tag = json_body(request).get("tag")
    if request.method == "POST":
        services.do_tag(request.user, asset, tag)
    else:
        services.do_untag(request.user, asset, tag)
    return 200, {"tags": list(asset.tags.values_list("name", flat=True))}


@api(["POST", "DELETE"])
def asset_favourite(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    """Star (POST) or unstar (DELETE) the asset for the caller alone."""
    asset = asset_or_404(request.user, asset_id)
    if request.method == "POST":
        services.do_favourite(request.user, asset)
        return 200, {"favourite": True}
    services.do_unfavourite(request.user, asset)
    return 200, {"favourite": False}
