"""The gallery's filters, search and order: one function that the gallery page and the assets API share."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.postgres.search import SearchQuery, SearchVectorField
from django.db import connection
from django.db.models import Expression, QuerySet
from django.utils import timezone
from pydantic import ValidationError

from studio.boundary import explain
from studio.errors import InvalidInput
from studio.models import Project

from .models import Asset, AssetStatus
from .schemas import AssetQuery

ORDERS = {"newest": "Newest first", "oldest": "Oldest first"}
# The keys filtered_assets reads; the page keeps them in its links (cursor and partial are added there).
FILTER_KEYS = ("status", "author", "model", "since", "until", "q", "order", "favourites", "board", "tag")
# The search configuration of the stored ``prompt_search`` column (gallery migration 0007, PostgreSQL only).
SEARCH_CONFIG = "english"


class PromptSearchVector(Expression):
    """The asset table's stored ``prompt_search`` tsvector column, a generated column the ORM does not
    manage (SQLite has no such type). Compiled against the query's own alias for the asset table, so it
    also works inside subqueries."""

    output_field = SearchVectorField()

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, Any]:
        alias = compiler.query.get_initial_alias()
        return f"{compiler.quote_name_unless_alias(alias)}.prompt_search", []  # no parameters


@dataclass
class AssetFilters:
    """The valid filters (invalid ones are dropped) and the field errors the page and the API show."""

    status: str = ""
    author: str = ""
    author_id: int | None = None
    model: str = ""
    since: dt.date | None = None
    until: dt.date | None = None
    q: str = ""
    order: str = "newest"
    favourites: bool = False
    board: int | None = None
    tag: str = ""
    errors: dict[str, list[str]] = field(default_factory=dict)

    @property
    def descending(self) -> bool:
        return self.order != "oldest"

    @property
    def active(self) -> bool:
        """Whether any filter (not the order) narrows the list."""
        return bool(
            self.status
            or self.author_id
            or self.model
            or self.since
            or self.until
            or self.q
            or self.favourites
            or self.board
            or self.tag
        )

    def query(self) -> dict[str, str]:
        """The non-default filters as query-string values, for links that keep them."""
        values = {
            "status": self.status,
            "author": self.author if self.author_id else "",
            "model": self.model,
            "since": self.since.isoformat() if self.since else "",
            "until": self.until.isoformat() if self.until else "",
            "q": self.q,
            "order": "" if self.order == "newest" else self.order,
            "favourites": "1" if self.favourites else "",
            "board": str(self.board) if self.board else "",
            "tag": self.tag,
        }
        return {k: v for k, v in values.items() if v}

    def raise_if_invalid(self) -> None:
        if self.errors:
            raise InvalidInput("Some filters are not valid.", self.errors)


def clean_filters(params: Any) -> AssetFilters:
    """Validate ``params`` (a QueryDict, a dict, or an ``AssetQuery`` the API has validated) against
    ``AssetQuery``. Never raises: errors are collected on the result and the bad values left out."""
    if isinstance(params, AssetQuery):
        query, errors = params, dict[str, list[str]]()
    else:
        query, errors = _lenient_query(
            {k: params.get(k) for k in FILTER_KEYS if params.get(k) not in (None, "")}
        )
    if query.since and query.until and query.since > query.until:
        errors["until"] = ["The end date is before the start date."]
        query = query.model_copy(update={"until": None})
    cleaned = AssetFilters(
        status=query.status or "",
        author=query.author or "",
        model=query.model or "",
        since=query.since,
        until=query.until,
        q=query.q or "",
        order=query.order,
        favourites=query.favourites,
        board=query.board,
        tag=query.tag or "",
        errors=errors,
    )
    if cleaned.author:
        author_id = (
            get_user_model().objects.filter(username=cleaned.author).values_list("pk", flat=True).first()
        )
        if author_id is None:
            cleaned.errors["author"] = [f"No user is named {cleaned.author!r}."]
            cleaned.author = ""
        else:
            cleaned.author_id = author_id
    return cleaned


def _lenient_query(raw: dict[str, Any]) -> tuple[AssetQuery, dict[str, list[str]]]:
    """The page's filters: each bad value is reported and dropped, the others apply."""
    try:
        return AssetQuery.model_validate(raw), {}
    except ValidationError as exc:
        errors = explain(exc.errors(include_url=False), AssetQuery)
        kept = {k: v for k, v in raw.items() if k not in errors}
        return AssetQuery.model_validate(kept), errors


def _day_start(day: dt.date) -> dt.datetime:
    """Midnight at the start of ``day`` in the site's time zone (the dates people type are local)."""
    return timezone.make_aware(dt.datetime.combine(day, dt.time.min), timezone.get_default_timezone())


def search(queryset: QuerySet[Asset], q: str) -> QuerySet[Asset]:
    """Full-text search of the prompt on PostgreSQL (web-search syntax: "quoted phrases", -excluded, or);
    a plain substring match elsewhere (SQLite in development and tests)."""
    if connection.vendor != "postgresql":
        return queryset.filter(prompt__icontains=q)
    return queryset.alias(search=PromptSearchVector()).filter(
        search=SearchQuery(q, search_type="websearch", config=SEARCH_CONFIG)
    )


def filtered_assets(user: Any, project: Project, params: Any) -> tuple[QuerySet[Asset], AssetFilters]:
    """The project's assets narrowed by ``params`` (status, author, model, since, until, q; order is read
    by the caller's ``keyset_page(..., descending=cleaned.descending)``).

    ``project`` must come from ``projects_visible_to(user)``: this function does not check access. Invalid
    values are left out of the queryset and reported in ``cleaned.errors``: the API answers 400 with them
    (``cleaned.raise_if_invalid()``), the page shows them beside the form and lists without that filter.
    At most one query runs here (the author's id); the queryset itself is lazy.
    """
    cleaned = clean_filters(params)
    queryset = Asset.objects.filter(project=project).select_related("project", "created_by")
    if cleaned.status:
        queryset = queryset.filter(status=cleaned.status)
    if cleaned.author_id is not None:
        queryset = queryset.filter(created_by_id=cleaned.author_id)
    if cleaned.model:
        queryset = queryset.filter(model_id=cleaned.model)
    if cleaned.since:
        queryset = queryset.filter(created_at__gte=_day_start(cleaned.since))
    if cleaned.until:
        queryset = queryset.filter(created_at__lt=_day_start(cleaned.until + dt.timedelta(days=1)))
    if cleaned.q:
        queryset = search(queryset, cleaned.q)
    queryset = _apply_collections(user, queryset, cleaned)
    return queryset, cleaned


# --- favourites, boards, tags: the only place that knows their relation names -----------------------
def _apply_collections(user: Any, queryset: QuerySet[Asset], cleaned: AssetFilters) -> QuerySet[Asset]:
    if cleaned.favourites:
        queryset = queryset.filter(favourites__user_id=user.pk)
    if cleaned.board is not None:
        queryset = queryset.filter(boards__id=cleaned.board)
    if cleaned.tag:
        queryset = queryset.filter(tags__name=cleaned.tag.strip().lower())  # tags are stored lowercased
    return queryset


def filter_options(project: Project, params: Any) -> dict[str, Any]:
    """What the filter bar offers (two queries: the project's members and boards) and the values as typed,
    so a bad value stays in its box beside its error."""
    from generation.engine import registry

    members = list(
        get_user_model()
        .objects.filter(memberships__project=project)
        .order_by("username")
        .values_list("username", flat=True)
    )
    models = [(m.id, m.name) for m in registry.list_models()]
    chosen = params.get("model", "")
    if chosen and chosen not in {m for m, _ in models}:
        models.append((chosen, chosen))  # a model since removed: its images stay findable
    return {
        "filter_values": {k: params.get(k, "") for k in FILTER_KEYS},
        "status_choices": AssetStatus.choices,
        "order_choices": list(ORDERS.items()),
        "member_names": members,
        "model_choices": models,
        "board_choices": list(project.boards.order_by("name").values_list("id", "name")),
    }
