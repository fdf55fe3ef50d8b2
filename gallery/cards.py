"""The gallery's asset cards (gallery pages, their infinite-scroll fetches and boards).

A gallery page holds 24 cards. Rendered by the template engine they took about 1.3 ms each on the benchmark
machine, two thirds of the page's server time, so they are built here (about 0.2 ms each): the markup is the
``CARD`` string below, filled by ``fill`` (``format_html``'s escaping rule), the URLs come from one
``reverse`` per name and page, and times are formatted without the localisation machinery (the UI is
English; times are in ``TIME_ZONE``).
The favourite star's markup is also in the asset page's template (``gallery/_star.html``): keep them alike.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django.middleware.csrf import get_token
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from .models import Asset, AssetKind, Favourite

CARD = """<div class="asset-card" data-asset-id="{id}">
  <a class="asset-thumb" href="{url}"><img src="{thumb_url}" loading="lazy" alt="{alt}" width="{width}" \
height="{height}"{tiny}></a>
  <div class="asset-meta">
    <p class="asset-prompt" title="{prompt}">{prompt_short}</p>
    <p class="asset-facts">
      <span class="badge status-{status}">{status_label}</span>
      {facts}
    </p>
    <p class="asset-byline"><span class="asset-author">{author}</span> · <time datetime="{iso_time}" \
title="{long_time}">{short_time}</time></p>
    <div class="asset-actions">
      {star}
      {remove}
    </div>
    {select}
  </div>
</div>
"""

STAR = """<form class="fav-form" method="post" action="{action}" data-api="{api}">
  {csrf}
  <input type="hidden" name="favourite" value="{value}">
  <input type="hidden" name="next" value="{next}">
  <button type="submit" class="star{on}" aria-pressed="{pressed}" title="{title}">{glyph}</button>
</form>"""

GENERATED_FACTS = """<span class="asset-model">{model}</span>
      <span class="asset-seed">seed {seed}</span>"""
UPLOAD_FACTS = """<span class="asset-kind">Uploaded{filename}</span>"""
SELECT = """<label class="asset-select"><input type="checkbox" name="assets" value="{id}" \
form="submit-selection"> Select</label>"""
REMOVE = """<button type="submit" form="remove-{id}" class="button-link board-remove-btn">\
Remove from board</button>"""
# The hidden form the Remove button submits (outside the card's star form, which must not nest).
REMOVE_FORM = """<form class="board-remove" method="post" action="{action}" hidden id="remove-{id}">{csrf}\
<input type="hidden" name="asset" value="{id}"></form>"""

_PLACEHOLDER = uuid.UUID(int=0)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def fill(template: str, **values: Any) -> SafeString:
    """``format_html(template, **values)`` without Django's lazy-string wrappers, which cost a page about
    5 ms here: every value is HTML-escaped unless it is already safe markup (``__html__``)."""
    escaped = {k: v.__html__() if hasattr(v, "__html__") else html.escape(str(v)) for k, v in values.items()}
    return mark_safe(template.format(**escaped))  # noqa: S308 - every value was escaped above


def truncate(text: str, length: int) -> str:
    """``text`` cut to ``length`` characters with an ellipsis, as the ``truncatechars`` filter does."""
    return text if len(text) <= length else text[: length - 1] + "…"


def _url_for(name: str) -> Callable[[Any], str]:
    """``reverse(name, args=[asset_id])`` for many ids at the cost of one ``reverse``: the route's only
    argument is a UUID, which no other part of the path can contain."""
    pattern = reverse(name, args=[_PLACEHOLDER])
    placeholder = str(_PLACEHOLDER)
    return lambda asset_id: pattern.replace(placeholder, str(asset_id))


# What a card shows: a gallery page loads only these (a third less time than whole rows and the project).
CARD_FIELDS = (
    "id", "kind", "params", "width", "height", "seed", "prompt", "model_name", "status", "created_at",
    "created_by__username",
)  # fmt: skip


def card_rows(queryset: QuerySet[Asset], viewer: Any) -> QuerySet[Asset]:
    """``queryset`` narrowed to what ``render_cards`` reads, with ``starred``: whether ``viewer`` has the
    asset among their favourites."""
    return (
        queryset.select_related(None)
        .select_related("created_by")
        .only(*CARD_FIELDS)
        .annotate(starred=Exists(Favourite.objects.filter(user_id=viewer.pk, asset=OuterRef("pk"))))
    )


def render_cards(
    request: HttpRequest,
    assets: Iterable[Asset],
    *,
    can_submit: bool,
    remove_from_board_url: str = "",
) -> SafeString:
    """The cards of ``assets`` (rows from ``card_rows``). ``can_submit``: show the selection boxes;
    ``remove_from_board_url``: add a "Remove from board" button posting there."""
    csrf = fill('<input type="hidden" name="csrfmiddlewaretoken" value="{token}">', token=get_token(request))
    asset_url, thumb_url = _url_for("asset"), _url_for("asset-thumb")
    favourite_url, favourite_api = _url_for("asset-favourite"), _url_for("api-asset-favourite")
    cards = []
    for a in assets:
        starred = a.starred  # type: ignore[attr-defined]  # annotated by card_rows
        when = timezone.localtime(a.created_at)
        if a.kind == AssetKind.UPLOAD:
            filename = a.params.get("filename") if isinstance(a.params, dict) else None
            facts = fill(UPLOAD_FACTS, filename=f" · {truncate(filename, 40)}" if filename else "")
        else:
            facts = fill(GENERATED_FACTS, model=a.model_name, seed=a.seed)
        star = fill(
            STAR,
            action=favourite_url(a.id),
            api=favourite_api(a.id),
            csrf=csrf,
            value="0" if starred else "1",
            next=request.path,
            on=" on" if starred else "",
            pressed="true" if starred else "false",
            title="Remove from your favourites" if starred else "Add to your favourites",
            glyph="★" if starred else "☆",
        )
        cards.append(
            fill(
                CARD,
                id=a.id,
                url=asset_url(a.id),
                thumb_url=thumb_url(a.id),
                alt=truncate(a.prompt, 120),
                width=a.width,
                height=a.height,
                tiny=mark_safe(' class="tiny"') if a.width < 256 else "",  # noqa: S308 - a constant
                prompt=a.prompt,
                prompt_short=truncate(a.prompt, 90),
                status=a.status,
                status_label=a.get_status_display(),
                facts=facts,
                author=a.created_by.username,
                iso_time=when.isoformat(),
                long_time=f"{when:%Y-%m-%d %H:%M:%S} {when.tzname()}",
                short_time=f"{MONTHS[when.month - 1]} {when.day}, {when:%H:%M}",
                star=star,
                remove=fill(REMOVE, id=a.id) if remove_from_board_url else "",
                select=fill(SELECT, id=a.id) if can_submit else "",
            )
        )
        if remove_from_board_url:
            cards.append(fill(REMOVE_FORM, action=remove_from_board_url, id=a.id, csrf=csrf))
    return mark_safe("".join(cards))  # noqa: S308 - every part comes from fill
