"""On PostgreSQL the gallery searches prompts with full-text search (stemming, web-search syntax), and the
query reads the stored, GIN-indexed vector of migration 0007, so the planner can take the index and never
re-parses prompts row by row."""

from __future__ import annotations

import pytest
from django.db import connection
from django.utils import timezone

from gallery.models import Asset
from gallery.queries import filtered_assets, search

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def assets(team):
    if connection.vendor != "postgresql":
        pytest.skip("full-text search runs on PostgreSQL only")
    prompts = ["A ginger cat sleeping on a red sofa", "two cats playing", "an empty sofa", "the sea at dawn"]
    now = timezone.now()
    return {
        p: Asset.objects.create(
            project=team["project"],
            file="x.png",
            width=64,
            height=64,
            seed=1,
            prompt=p,
            params={},
            model_id="demo",
            model_name="Demo",
            model_sha256="0" * 64,
            created_by=team["bob"],
            created_at=now - timezone.timedelta(minutes=i),
        )
        for i, p in enumerate(prompts)
    }


def prompts(team, q: str) -> list[str]:
    queryset, cleaned = filtered_assets(team["vera"], team["project"], {"q": q})
    assert not cleaned.errors
    return [a.prompt for a in queryset.order_by("-created_at")]


def test_full_text_search_stems_and_understands_web_search_syntax(team, assets):
    assert prompts(team, "cats") == ["A ginger cat sleeping on a red sofa", "two cats playing"]
    assert prompts(team, "sofa -cat") == ["an empty sofa"]
    assert prompts(team, '"red sofa"') == ["A ginger cat sleeping on a red sofa"]


def test_the_search_index_serves_the_query(team, assets):
    # On four rows the planner prefers other indexes; the point is that it *can* use this one.
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_indexscan = off")
        plan = search(Asset.objects.order_by(), "sofa").explain()
    assert "asset_prompt_search_stored" in plan
    assert "to_tsvector" not in plan  # the stored column is read, not recomputed


def test_search_works_inside_a_subquery(team, assets):
    # Subqueries alias the asset table (U0): the stored column must follow the alias.
    inner = search(Asset.objects.filter(project=team["project"]), "cats").values("id")
    found = Asset.objects.filter(id__in=inner).order_by("-created_at")
    assert [a.prompt for a in found] == ["A ginger cat sleeping on a red sofa", "two cats playing"]
