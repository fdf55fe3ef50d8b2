"""``/api/v1/`` endpoints for assets."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404

from studio.api_utils import api, json_body
from studio.audit import client_ip
from studio.errors import InvalidInput
from studio.pagination import keyset_page
from studio.permissions import projects_visible_to

from . import services
from .models import AssetStatus, Notification
from .serializers import asset_to_dict, comment_to_dict, notification_to_dict, review_to_dict
from .views import asset_or_404, export_response, image_response, thumbnail_response

PAGE_SIZE = 30
NOTIFICATIONS_PAGE = 50


@api(["GET"])
def project_assets(request: HttpRequest, slug: str) -> tuple[int, Any]:
    project = get_object_or_404(projects_visible_to(request.user), slug=slug)
    queryset = project.assets.select_related("project", "created_by")
    status = request.GET.get("status")
    if status:
        if status not in AssetStatus.values:
            raise InvalidInput(
                "Unknown status.", {"status": [f"Choose one of {', '.join(AssetStatus.values)}."]}
            )
        queryset = queryset.filter(status=status)
    query = request.GET.get("q", "").strip()
    if query:
        queryset = queryset.filter(prompt__icontains=query)
    page, next_cursor = keyset_page(queryset, request.GET.get("cursor"), PAGE_SIZE)
    return 200, {"results": [asset_to_dict(a) for a in page], "next": next_cursor}


@api(["GET", "DELETE"])
def asset_detail(request: HttpRequest, asset_id: str) -> tuple[int, Any] | HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    if request.method == "DELETE":
        services.do_delete_asset(request.user, asset, ip=client_ip(request))
        return HttpResponse(status=204)
    return 200, asset_to_dict(asset)


@api(["GET"])
def asset_image(request: HttpRequest, asset_id: str) -> FileResponse:
    return image_response(asset_or_404(request.user, asset_id))


@api(["GET"])
def asset_thumbnail(request: HttpRequest, asset_id: str) -> FileResponse:
    return thumbnail_response(asset_or_404(request.user, asset_id))


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
