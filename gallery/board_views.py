"""Pages for boards, tags, favourites and the compare view.

Kept beside ``views.py`` (which holds the gallery and asset pages) so the two grow independently; writes go
through ``services`` like everywhere else.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from studio import permissions as studio_permissions
from studio.errors import InvalidInput, ServiceError
from studio.models import Project
from studio.shortcuts import get_visible_or_404

from . import services
from .cards import card_rows, render_cards
from .models import Asset, Board
from .permissions import boards_visible_to, can_curate, can_delete_board, can_submit_any
from .views import _asset_context, asset_or_404

COMPARE_MIN, COMPARE_MAX = 2, 4


def _project_or_404(user: Any, slug: str) -> Project:
    return get_object_or_404(studio_permissions.projects_visible_to(user), slug=slug)


def _board_or_404(user: Any, board_id: int) -> Board:
    return get_visible_or_404(boards_visible_to(user).select_related("project", "created_by"), id=board_id)


def _next_or(request: HttpRequest, fallback: str) -> str:
    """The form's ``next`` when it is a local URL (the gallery a star was clicked in), else the fallback."""
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return fallback


# --- boards --


def _boards_page(request: HttpRequest, project: Project, *, status: int = 200, **extra: Any) -> HttpResponse:
    boards = (
        Board.objects.filter(project=project)
        .select_related("created_by")
        .annotate(item_count=Count("items"), last_added=Max("items__added_at"))
    )
    context = {
        "project": project,
        "role": studio_permissions.role_in(request.user, project),
        "boards": boards,
        "can_curate": can_curate(request.user, project),
        **extra,
    }
    return render(request, "gallery/boards.html", context, status=status)


@login_required
@require_GET
def boards(request: HttpRequest, slug: str) -> HttpResponse:
    """The project's boards with how many images each holds."""
    return _boards_page(request, _project_or_404(request.user, slug))


@login_required
@require_POST
def board_create(request: HttpRequest, slug: str) -> HttpResponse:
    project = _project_or_404(request.user, slug)
    name = request.POST.get("name", "")
    try:
        board = services.do_create_board(request.user, project, name)
    except ServiceError as exc:
        return _boards_page(request, project, status=exc.status, board_error=exc.message, board_name=name)
    messages.success(request, f"Board “{board.name}” created.")
    return redirect("board", board_id=board.id)


def _board_page(request: HttpRequest, board: Board, *, status: int = 200, **extra: Any) -> HttpResponse:
    assets = list(
        card_rows(Asset.objects.filter(board_items__board=board), request.user).order_by(
            "-board_items__added_at", "-id"
        )
    )
    user = request.user
    curate = can_curate(user, board.project)
    cards = render_cards(
        request,
        assets,
        can_submit=False,
        remove_from_board_url=reverse("board-remove", args=[board.id]) if curate else "",
    )
    context = {
        "board": board,
        "project": board.project,
        "role": studio_permissions.role_in(user, board.project),
        "assets": assets,
        "cards": cards,
        "can_curate": curate,
        "can_delete_board": can_delete_board(user, board),
        **extra,
    }
    return render(request, "gallery/board.html", context, status=status)


@login_required
@require_GET
def board(request: HttpRequest, board_id: int) -> HttpResponse:
    """A board's images, most recently added first, in the gallery's grid."""
    return _board_page(request, _board_or_404(request.user, board_id))


@login_required
@require_POST
def board_remove(request: HttpRequest, board_id: int) -> HttpResponse:
    """Take one image off the board (the ``asset`` field)."""
    found = _board_or_404(request.user, board_id)
    try:
        services.do_remove_from_board(request.user, found, request.POST.get("asset", ""))
    except ServiceError as exc:
        return _board_page(request, found, status=exc.status, board_error=exc.message)
    messages.success(request, "Removed from the board.")
    return redirect("board", board_id=found.id)


@login_required
@require_POST
def board_delete(request: HttpRequest, board_id: int) -> HttpResponse:
    found = _board_or_404(request.user, board_id)
    try:
        services.do_delete_board(request.user, found)
    except ServiceError as exc:
        return _board_page(request, found, status=exc.status, board_error=exc.message)
    messages.success(request, f"Board “{found.name}” deleted; its images are still in the gallery.")
    return redirect("boards", slug=found.project.slug)


# --- the asset page's boards, tags and star --


def _asset_error(request: HttpRequest, asset: Asset, exc: ServiceError) -> HttpResponse:
    return render(
        request,
        "gallery/asset.html",
        _asset_context(request, asset, collect_error=exc.message),
        status=exc.status,
    )


@login_required
@require_POST
def asset_board(request: HttpRequest, asset_id: str) -> HttpResponse:
    """Add the image to a board: an existing one (``board``, an id) or a new one (``new_board``, a name)."""
    asset = asset_or_404(request.user, asset_id)
    new_name = request.POST.get("new_board", "").strip()
    try:
        services.check_curate(request.user, asset.project)
        if new_name:
            target = services.do_create_board(request.user, asset.project, new_name)
        else:
            raw = request.POST.get("board", "")
            target_or_none = (
                Board.objects.filter(project_id=asset.project_id, id=int(raw)).first()
                if raw.isdigit()
                else None
            )
            if target_or_none is None:
                raise InvalidInput("Choose a board or name a new one.", {"board": ["Required."]})
            target = target_or_none
        services.do_add_to_board(request.user, target, asset)
    except ServiceError as exc:
        return _asset_error(request, asset, exc)
    messages.success(request, f"Added to “{target.name}”.")
    return redirect(reverse("asset", args=[asset.id]) + "#collect")


@login_required
@require_POST
def asset_tag(request: HttpRequest, asset_id: str) -> HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    try:
        services.do_tag(request.user, asset, request.POST.get("tag", ""))
    except ServiceError as exc:
        return _asset_error(request, asset, exc)
    return redirect(reverse("asset", args=[asset.id]) + "#collect")


@login_required
@require_POST
def asset_untag(request: HttpRequest, asset_id: str) -> HttpResponse:
    asset = asset_or_404(request.user, asset_id)
    try:
        services.do_untag(request.user, asset, request.POST.get("tag", ""))
    except ServiceError as exc:
        return _asset_error(request, asset, exc)
    return redirect(reverse("asset", args=[asset.id]) + "#collect")


@login_required
@require_POST
def asset_favourite(request: HttpRequest, asset_id: str) -> HttpResponse:
    """Star (``favourite=1``) or unstar (``favourite=0``) an image for oneself; back to ``next`` if local."""
    asset = asset_or_404(request.user, asset_id)
    wanted = request.POST.get("favourite")
    try:
        if wanted == "1":
            services.do_favourite(request.user, asset)
        elif wanted == "0":
            services.do_unfavourite(request.user, asset)
        else:
            raise InvalidInput("Say whether to star the image.", {"favourite": ["Give 1 or 0."]})
    except ServiceError as exc:
        return _asset_error(request, asset, exc)
    return redirect(_next_or(request, reverse("asset", args=[asset.id])))


# --- compare --

# Rows shown first, in this order, before the remaining parameters (alphabetically).
FIXED_ROWS: list[tuple[str, str]] = [
    ("prompt", "Prompt"),
    ("negative_prompt", "Negative prompt"),
    ("model", "Model"),
    ("seed", "Seed"),
    ("size", "Size"),
    ("steps", "Steps"),
    ("guidance_scale", "Guidance"),
    ("scheduler", "Scheduler"),
    ("status", "Status"),
    ("created_by", "Author"),
]


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def compare_rows(assets: list[Asset]) -> list[dict[str, Any]]:
    """One row per parameter: its label, each asset's value as text, and whether they differ."""
    facts = [
        {
            **{k: v for k, v in a.params.items() if k not in ("width", "height", "num_images")},
            "prompt": a.prompt,
            "negative_prompt": a.negative_prompt,
            "model": a.model_name or a.model_id,
            "seed": a.seed,
            "size": f"{a.width} × {a.height}",
            "status": a.get_status_display(),
            "created_by": a.created_by.username,
        }
        for a in assets
    ]
    fixed = [key for key, _ in FIXED_ROWS]
    others = sorted({k for f in facts for k in f} - set(fixed))
    labels = dict(FIXED_ROWS)
    rows = []
    for key in fixed + others:
        values = [_display(f.get(key)) for f in facts]
        rows.append(
            {"key": key, "label": labels.get(key, key), "values": values, "differs": len(set(values)) > 1}
        )
    return rows


def check_compare(project: Project, ids: str | None) -> list[Asset]:
    """The 2..4 assets of the project named by the comma-separated ``ids``, in that order; InvalidInput (400)
    otherwise, with a sentence for the page."""
    wanted: list[str] = []
    for part in (ids or "").split(","):
        part = part.strip()
        if part and part not in wanted:
            wanted.append(part)
    if not COMPARE_MIN <= len(wanted) <= COMPARE_MAX:
        raise InvalidInput(
            f"Select {COMPARE_MIN} to {COMPARE_MAX} images to compare ({len(wanted)} given).",
            {"ids": [f"Give {COMPARE_MIN} to {COMPARE_MAX} image ids separated by commas."]},
        )
    try:
        parsed = [uuid.UUID(raw) for raw in wanted]
    except ValueError as exc:
        raise InvalidInput(
            "Some ids are not image ids.", {"ids": ["Give image ids separated by commas."]}
        ) from exc
    found = {
        a.id: a for a in Asset.objects.filter(project=project, id__in=parsed).select_related("created_by")
    }
    missing = [str(i) for i in parsed if i not in found]
    if missing:
        raise InvalidInput(
            "Some of these images are not in this project.",
            {"ids": [f"Not in this project: {', '.join(missing)}."]},
        )
    return [found[i] for i in parsed]


@login_required
@require_GET
def compare(request: HttpRequest, slug: str) -> HttpResponse:
    """2..4 images of the project side by side with their parameters; differing values are highlighted."""
    project = _project_or_404(request.user, slug)
    context: dict[str, Any] = {
        "project": project,
        "role": studio_permissions.role_in(request.user, project),
        "can_submit": can_submit_any(request.user, project),
    }
    try:
        assets = check_compare(project, request.GET.get("ids"))
    except ServiceError as exc:
        return render(request, "gallery/compare.html", {**context, "compare_error": exc.message}, status=400)
    return render(
        request, "gallery/compare.html", {**context, "assets": assets, "rows": compare_rows(assets)}
    )
