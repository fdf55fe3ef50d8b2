"""``/api/v1/`` endpoints for assets."""

from __future__ import annotations

from typing import Any

from django.http import FileResponse, HttpRequest
from django.shortcuts import get_object_or_404

from studio.api_utils import api
from studio.errors import InvalidInput
from studio.pagination import keyset_page
from studio.permissions import projects_visible_to

from .models import AssetStatus
from .serializers import asset_to_dict
from .views import asset_or_404, image_response

PAGE_SIZE = 30


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


@api(["GET"])
def asset_detail(request: HttpRequest, asset_id: str) -> tuple[int, Any]:
    return 200, asset_to_dict(asset_or_404(request.user, asset_id))


@api(["GET"])
def asset_image(request: HttpRequest, asset_id: str) -> FileResponse:
    return image_response(asset_or_404(request.user, asset_id))
