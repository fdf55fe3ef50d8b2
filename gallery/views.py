"""Gallery pages and the private image view."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from studio import permissions as studio_permissions
from studio.errors import InvalidInput
from studio.pagination import keyset_page
from studio.shortcuts import get_visible_or_404

from .models import Asset
from .permissions import assets_visible_to

GALLERY_PAGE = 24


def asset_or_404(user: Any, asset_id: str) -> Asset:
    return get_visible_or_404(
        assets_visible_to(user).select_related("project", "created_by", "job"), id=asset_id
    )


def image_response(asset: Asset) -> FileResponse:
    """Stream the PNG from storage. Private: never cached by shared caches."""
    response = FileResponse(asset.file.open("rb"), content_type="image/png")
    response["Content-Disposition"] = f'inline; filename="{asset.id}.png"'
    response["Cache-Control"] = "private, max-age=3600"
    return response


@login_required
@require_GET
def gallery(request: HttpRequest, slug: str) -> HttpResponse:
    project = get_object_or_404(studio_permissions.projects_visible_to(request.user), slug=slug)
    queryset = Asset.objects.filter(project=project).select_related("created_by")
    try:
        assets, next_cursor = keyset_page(queryset, request.GET.get("cursor"), GALLERY_PAGE)
    except InvalidInput:
        assets, next_cursor = keyset_page(queryset, None, GALLERY_PAGE)
    context = {
        "project": project,
        "role": studio_permissions.role_in(request.user, project),
        "assets": assets,
        "next_cursor": next_cursor,
        "is_first_page": not request.GET.get("cursor"),
    }
    return render(request, "gallery/gallery.html", context)


@login_required
@require_GET
def asset_page(request: HttpRequest, asset_id: str) -> HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    role = studio_permissions.role_in(request.user, asset.project)
    return render(
        request,
        "gallery/asset.html",
        {
            "asset": asset,
            "project": asset.project,
            "role": role,
            "can_generate": studio_permissions.can_generate(request.user, asset.project),
            "params": sorted(asset.params.items()),
        },
    )


@login_required
@require_GET
def asset_image(request: HttpRequest, asset_id: str) -> FileResponse:
    return image_response(asset_or_404(request.user, asset_id))
