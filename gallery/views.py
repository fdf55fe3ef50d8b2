"""Gallery pages and the private image view."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.handlers.asgi import ASGIRequest
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import pluralize
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from studio import permissions as studio_permissions
from studio.audit import client_ip
from studio.errors import InvalidInput, NotAllowed, ServiceError
from studio.pagination import keyset_page
from studio.shortcuts import get_visible_or_404

from . import exports, privacy, provenance, services
from .cards import card_rows, render_cards
from .curation import asset_page_context
from .media import private_file_response
from .models import Asset, Notification
from .permissions import (
    assets_visible_to,
    can_comment,
    can_delete,
    can_review,
    can_submit,
    can_submit_any,
    gallery_page_abilities,
)
from .queries import filter_options, filtered_assets

GALLERY_PAGE = 24


def asset_or_404(user: Any, asset_id: str) -> Asset:
    return get_visible_or_404(
        assets_visible_to(user).select_related("project", "created_by", "job"), id=asset_id
    )


def image_response(request: HttpRequest, asset: Asset) -> HttpResponseBase:
    """The PNG (or the byte range asked for). Private: never cached by shared caches; through nginx when it
    can be (gallery/media.py)."""
    return private_file_response(asset.file, "image/png", f"{asset.id}.png", request.headers.get("Range"))


def thumbnail_response(request: HttpRequest, asset: Asset) -> HttpResponseBase:
    """The grid-sized JPEG; the full PNG for assets made before thumbnails existed."""
    if not asset.thumbnail:
        return image_response(request, asset)
    range_header = request.headers.get("Range")
    return private_file_response(asset.thumbnail, "image/jpeg", f"{asset.id}.thumb.jpg", range_header)


def mask_response(request: HttpRequest, asset: Asset) -> HttpResponseBase:
    """The inpainting mask an image was made with (white = repainted); 404 when it has none."""
    if not asset.mask:
        raise Http404("This image was not made with a mask.")
    range_header = request.headers.get("Range")
    return private_file_response(asset.mask, "image/png", f"{asset.id}.mask.png", range_header)


def control_map_response(request: HttpRequest, asset: Asset, unit: int) -> HttpResponseBase:
    """The control map ControlNet unit ``unit`` of the image's job steered with; 404 when it has none."""
    found = asset.control_maps.filter(unit=unit).first() if 0 <= unit < 100 else None
    if found is None or not found.file:
        raise Http404("This image was not made with that ControlNet unit.")
    range_header = request.headers.get("Range")
    return private_file_response(found.file, "image/png", f"{asset.id}.control-{unit}.png", range_header)


def export_response(request: HttpRequest, plan: services.ExportPlan) -> StreamingHttpResponse:
    """The export as a streamed zip download. Streams have no Content-Length, so the headers announce the
    file count and an estimate of the size for progress bars."""
    name = exports.archive_name(plan)
    chunks = exports.zip_chunks(plan, name)
    # Under ASGI (daphne) a synchronous body would be collected whole before sending; hand it an async one.
    body = exports.as_async(chunks) if isinstance(request, ASGIRequest) else chunks
    response = StreamingHttpResponse(body, content_type="application/zip")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "private, no-store"
    response["X-Studio-Export-Files"] = str(len(plan.asset_ids))
    response["X-Studio-Export-Bytes"] = str(exports.estimated_size(plan))
    response["Access-Control-Expose-Headers"] = "X-Studio-Export-Files, X-Studio-Export-Bytes"
    return response


@login_required
@require_GET
def gallery(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's images with the filter bar. ``?partial=1`` answers only the cards of that page (the
    infinite scroll's fetch), with the next page's URL in ``X-Next-Page``. Bad filters are shown beside the
    form and left out; a bad cursor shows the first page."""
    project, role = studio_permissions.visible_project_and_role_or_404(request.user, slug=slug)
    queryset, filters = filtered_assets(request.user, project, request.GET)
    rows = card_rows(queryset, request.user)
    try:
        assets, next_cursor = keyset_page(
            rows, request.GET.get("cursor"), GALLERY_PAGE, descending=filters.descending
        )
    except InvalidInput:
        assets, next_cursor = keyset_page(rows, None, GALLERY_PAGE, descending=filters.descending)
    query = filters.query()
    next_url = "?" + urlencode({**query, "cursor": next_cursor}) if next_cursor else ""
    abilities = gallery_page_abilities(role)
    cards = render_cards(request, assets, can_submit=abilities["can_submit"])
    if request.GET.get("partial"):
        response = HttpResponse(cards)
        response["X-Next-Page"] = next_url
        return response
    context = {
        "project": project,
        **abilities,
        "assets": assets,
        "cards": cards,
        "next_cursor": next_cursor,
        "next_url": next_url,
        "first_url": "?" + urlencode(query),
        "is_first_page": not request.GET.get("cursor"),
        "filters": filters,
    }
    context.update(filter_options(project, request.GET))
    return render(request, "gallery/gallery.html", context)


@login_required
@require_GET
def asset_page(request: HttpRequest, asset_id: str) -> HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    return render(request, "gallery/asset.html", _asset_context(request, asset))


@login_required
@require_GET
def asset_image(request: HttpRequest, asset_id: str) -> HttpResponseBase:
    return image_response(request, asset_or_404(request.user, asset_id))


@login_required
@require_GET
def asset_thumb(request: HttpRequest, asset_id: str) -> HttpResponseBase:
    return thumbnail_response(request, asset_or_404(request.user, asset_id))


@login_required
@require_GET
def asset_mask(request: HttpRequest, asset_id: str) -> HttpResponseBase:
    return mask_response(request, asset_or_404(request.user, asset_id))


@login_required
@require_GET
def asset_control_map(request: HttpRequest, asset_id: str, unit: int) -> HttpResponseBase:
    return control_map_response(request, asset_or_404(request.user, asset_id), unit)


@login_required
@require_POST
def asset_delete(request: HttpRequest, asset_id: str) -> HttpResponse:
    """The asset page's Delete button (confirmed on the page). Leads and admins; 404 for non-members."""
    asset = asset_or_404(request.user, asset_id)
    slug = asset.project.slug
    try:
        services.do_delete_asset(request.user, asset, ip=client_ip(request))
    except NotAllowed as exc:
        raise PermissionDenied(exc.message) from exc
    messages.success(request, "The image was deleted.")
    return redirect("gallery", slug=slug)


# --- reviews, comments, notifications --


def _asset_context(request: HttpRequest, asset: Asset, **extra: Any) -> dict[str, Any]:
    user = request.user
    return {
        "asset": asset,
        "project": asset.project,
        "role": studio_permissions.role_in(user, asset.project),
        "can_generate": studio_permissions.can_generate(user, asset.project),
        "can_delete": can_delete(user, asset),
        "can_review": can_review(user, asset),
        "can_submit": can_submit(user, asset) and asset.status in services.SUBMITTABLE,
        "can_comment": can_comment(user, asset),
        "reviews": asset.reviews.select_related("by"),
        "comments": asset.comments.select_related("author"),
        "params": sorted(asset.params.items()),
        "parent": _visible_parent(user, asset),
        "references": _visible_references(user, asset),
        "control_units": _control_units(user, asset),
        "start_image_actions": _start_image_actions(asset)
        if studio_permissions.can_generate(user, asset.project)
        else [],
        **asset_page_context(user, asset),
        **extra,
    }


def _visible_parent(user: Any, asset: Asset) -> Asset | None:
    """The image this one was made from, when it still exists (and so is visible: same project)."""
    if not asset.parent_id:
        return None
    return assets_visible_to(user).filter(id=asset.parent_id).first()


def _visible_references(user: Any, asset: Asset) -> list[dict[str, Any]]:
    """The reference images that steered this one, in order: each with its kind, weight and fidelity and
    its asset while it still exists (and so is visible: same project); one query."""
    used = [r for r in asset.params.get("references") or [] if isinstance(r, dict)]
    if not used:
        return []
    found = {
        str(a.id): a
        for a in assets_visible_to(user).filter(project=asset.project, id__in=[str(r["image"]) for r in used])
    }
    return [{**r, "asset": found.get(str(r["image"]))} for r in used]


def _control_units(user: Any, asset: Asset) -> list[dict[str, Any]]:
    """The image's ControlNet units for its page: each with its settings, its control image (while it exists)
    and the URL of its control map (when it was kept)."""
    units = asset.params.get("controlnets") if isinstance(asset.params, dict) else None
    if not units:
        return []
    kept = set(asset.control_maps.values_list("unit", flat=True))
    wanted = [u.get("image") for u in units if u.get("image")]
    sources = {str(a.id): a for a in assets_visible_to(user).filter(project=asset.project_id, id__in=wanted)}
    return [
        {
            **unit,
            "index": index,
            "source": sources.get(str(unit.get("image"))),
            "map_url": reverse("asset-control-map", args=[asset.id, index]) if index in kept else None,
        }
        for index, unit in enumerate(units)
    ]


def _start_image_actions(asset: Asset) -> list[tuple[str, str, str]]:
    """The asset page's links that open the generate page with this image as the start image:
    (element id, label, URL)."""
    base = reverse("project", args=[asset.project.slug]) + "?"
    links = [
        ("use-as-start", "Use as start image", {"mode": "img2img"}),
        ("inpaint", "Inpaint", {"mode": "inpaint"}),
        ("outpaint", "Extend canvas", {"mode": "outpaint"}),
        ("vary-subtle", "Vary (subtle)", {"mode": "variation", "variation": "subtle"}),
        ("vary-strong", "Vary (strong)", {"mode": "variation", "variation": "strong"}),
        ("upscale", "Upscale ×2", {"mode": "upscale", "scale": "2"}),
    ]
    return [(key, label, base + urlencode({"init": str(asset.id), **query})) for key, label, query in links]


def _asset_page_error(request: HttpRequest, asset: Asset, exc: ServiceError, **extra: Any) -> HttpResponse:
    """The asset page again with the refusal, answered with the error's status (403, 400, 409)."""
    return render(
        request,
        "gallery/asset.html",
        _asset_context(request, asset, review_error=exc.message, **extra),
        status=exc.status,
    )


@login_required
@require_POST
def asset_submit(request: HttpRequest, asset_id: str) -> HttpResponse:
    """The asset page's "Submit for review" button (the author, leads and admins)."""
    asset = asset_or_404(request.user, asset_id)
    try:
        services.do_submit(request.user, asset)
    except ServiceError as exc:
        return _asset_page_error(request, asset, exc)
    messages.success(request, "Submitted for review.")
    return redirect("asset", asset_id=asset.id)


@login_required
@require_POST
def asset_review(request: HttpRequest, asset_id: str) -> HttpResponse:
    """The asset page's Approve / Reject / Request changes buttons (leads and admins)."""
    asset = asset_or_404(request.user, asset_id)
    comment = request.POST.get("comment", "")
    try:
        asset, review = services.do_review(
            request.user, asset, request.POST.get("decision"), comment, ip=client_ip(request)
        )
    except ServiceError as exc:
        return _asset_page_error(request, asset, exc, review_comment=comment)
    messages.success(request, f"Decision recorded: {review.get_decision_display().lower()}.")
    return redirect("asset", asset_id=asset.id)


@login_required
@require_POST
def asset_comment(request: HttpRequest, asset_id: str) -> HttpResponse:
    """Add a comment from the asset page (every member who sees the asset)."""
    asset = asset_or_404(request.user, asset_id)
    text = request.POST.get("text", "")
    try:
        services.do_comment(request.user, asset, text)
    except ServiceError as exc:
        return render(
            request,
            "gallery/asset.html",
            _asset_context(request, asset, comment_error=exc.message, comment_text=text),
            status=exc.status,
        )
    return redirect(reverse("asset", args=[asset.id]) + "#comments")


@login_required
@require_POST
def gallery_submit(request: HttpRequest, slug: str) -> HttpResponse:
    """The gallery's "Submit for review" on the checked images. Images the user may not submit, or that are
    not drafts (or waiting for changes), are skipped and counted."""
    project = get_object_or_404(studio_permissions.projects_visible_to(request.user), slug=slug)
    if not can_submit_any(request.user, project):
        raise PermissionDenied("Viewers cannot submit images for review.")
    ids = request.POST.getlist("assets")
    if not ids:
        messages.error(request, "Select the images to submit first.")
        return redirect("gallery", slug=project.slug)
    submitted, skipped = services.do_submit_many(request.user, project, ids)
    text = f"{submitted} image{pluralize(submitted)} submitted for review."
    if skipped:
        text += f" {skipped} skipped (already submitted or decided, or not yours)."
    (messages.success if submitted else messages.warning)(request, text)
    return redirect("gallery", slug=project.slug)


@login_required
@require_GET
def notifications(request: HttpRequest) -> HttpResponse:
    """The signed-in user's notifications, newest first; unread ones stand out until marked read."""
    signed_in: Any = request.user  # signed in: the decorator checked
    rows = Notification.objects.filter(user=signed_in).select_related("project", "asset")[:100]
    return render(request, "gallery/notifications.html", {"notifications": rows})


@login_required
@require_POST
def notifications_read(request: HttpRequest) -> HttpResponse:
    services.do_mark_notifications_read(request.user)
    return redirect("notifications")


# --- Content Credentials and privacy --


@login_required
@require_http_methods(["GET", "POST"])
def verify_page(request: HttpRequest) -> HttpResponse:
    """Drop an image to see its Content Credentials: valid and trusted or not, who and what made it, its
    chain of edits, and the asset of a visible project it is (``POST /api/v1/verify`` answers the same)."""
    context: dict[str, Any] = {"report": None, "error": None}
    status = 200
    if request.method == "POST":
        try:
            data = provenance.read_upload(request.FILES.get("image"))
            context["report"] = provenance.verify(request.user, data)
            context["filename"] = getattr(request.FILES.get("image"), "name", "")
        except ServiceError as exc:
            context["error"], status = exc.message, exc.status
    return render(request, "gallery/verify.html", context, status=status)


@login_required
@require_GET
def privacy_page(request: HttpRequest) -> HttpResponse:
    """What is stored where, who sees it, what is encrypted and signed, what is kept how long: read from
    the running configuration."""
    return render(request, "gallery/privacy.html", privacy.page_context(request.user))
