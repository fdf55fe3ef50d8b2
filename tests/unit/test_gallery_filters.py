"""Gallery filters, search and order (gallery/queries.py), shared by the page and the assets API.

Bob (artist) and Alice (lead) made images in the poster project over three days; Vera watches.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from urllib.parse import parse_qs, urlparse

import pytest
from django.db import connection
from django.utils import timezone

from gallery.models import Asset
from gallery.queries import filtered_assets

pytestmark = pytest.mark.django_db

API = "/api/v1/projects/poster/assets"
PAGE = "/p/poster/gallery/"


def local(day: int, hour: int) -> dt.datetime:
    """A time on the given day of January 2026 in the site's time zone."""
    return dt.datetime(2026, 1, day, hour, tzinfo=timezone.get_default_timezone())


def make(team, author: str = "bob", *, when: dt.datetime, prompt: str = "a red circle", **fields) -> Asset:
    return Asset.objects.create(
        project=team["project"],
        file="assets/x/none.png",
        width=64,
        height=64,
        seed=fields.pop("seed", 1),
        prompt=prompt,
        params={"prompt": prompt},
        model_id=fields.pop("model_id", "demo"),
        model_name="Demo",
        model_sha256="0" * 64,
        created_by=team[author],
        created_at=when,
        **fields,
    )


@pytest.fixture
def story(team):
    """Six images: two per day on January 1st to 3rd, of different authors, models, statuses and prompts."""
    rows = {
        "cat": make(team, "bob", when=local(1, 9), prompt="A ginger cat sleeping on a red sofa"),
        "dog": make(team, "alice", when=local(1, 23), prompt="a dog running in the park", status="approved"),
        "cats": make(team, "bob", when=local(2, 0), prompt="two cats playing", model_id="xl"),
        "city": make(team, "alice", when=local(2, 12), prompt="a city at night, neon", status="submitted"),
        "sofa": make(team, "bob", when=local(3, 8), prompt="an empty sofa", status="approved", model_id="xl"),
        "sea": make(team, "bob", when=local(3, 23), prompt="the sea at dawn"),
    }
    return team, rows


def api_names(client, rows, query: str = "") -> list[str]:
    response = client.get(f"{API}?{query}")
    assert response.status_code == 200, response.content
    by_id = {str(a.id): name for name, a in rows.items()}
    return [by_id[r["id"]] for r in response.json()["results"]]


def page_names(client, rows, query: str = "") -> list[str]:
    response = client.get(f"{PAGE}?{query}")
    assert response.status_code == 200
    by_id = {a.id: name for name, a in rows.items()}
    return [by_id[a.id] for a in response.context["assets"]]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["sea", "sofa", "city", "cats", "dog", "cat"]),
        ("status=approved", ["sofa", "dog"]),
        ("author=alice", ["city", "dog"]),
        ("model=xl", ["sofa", "cats"]),
        ("since=2026-01-02", ["sea", "sofa", "city", "cats"]),
        ("until=2026-01-01", ["dog", "cat"]),  # inclusive: 23:00 on the 1st counts
        ("since=2026-01-02&until=2026-01-02", ["city", "cats"]),  # midnight belongs to the 2nd
        ("author=bob&status=approved&model=xl", ["sofa"]),
        ("q=sofa", ["sofa", "cat"]),
        ("q=sofa&status=draft", ["cat"]),
        ("order=oldest", ["cat", "dog", "cats", "city", "sofa", "sea"]),
        ("order=oldest&author=bob", ["cat", "cats", "sofa", "sea"]),
    ],
)
def test_each_filter_narrows_the_api_and_the_page_alike(client, story, query, expected):
    team, rows = story
    client.force_login(team["vera"])
    assert api_names(client, rows, query) == expected
    assert page_names(client, rows, query) == expected


def test_the_date_range_is_read_in_the_site_time_zone(client, story, settings):
    team, rows = story
    # The story's times were made in UTC; in Tokyo (UTC+9) 23:00 UTC on the 3rd is already the 4th.
    settings.TIME_ZONE = "Asia/Tokyo"
    client.force_login(team["vera"])
    assert api_names(client, rows, "since=2026-01-04") == ["sea"]
    assert "sea" not in api_names(client, rows, "until=2026-01-03")


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the SQLite fallback")
def test_search_falls_back_to_a_substring_match_on_sqlite(client, story):
    team, rows = story
    client.force_login(team["vera"])
    assert api_names(client, rows, "q=CAT") == ["cats", "cat"]  # case-insensitive, and "cat" ⊂ "cats"
    assert api_names(client, rows, "q=at night") == ["city"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL full-text search")
def test_search_is_full_text_on_postgresql(client, story):
    team, rows = story
    client.force_login(team["vera"])
    assert api_names(client, rows, "q=cats") == ["cats", "cat"]  # stemmed: "cats" finds "cat"
    assert api_names(client, rows, "q=sofa -cat") == ["sofa"]  # websearch syntax: minus excludes
    assert api_names(client, rows, 'q="red sofa"') == ["cat"]  # a phrase
    assert api_names(client, rows, "q=the") == []  # only stop words: nothing to match


@pytest.mark.parametrize("descending", [True, False])
def test_pages_follow_one_another_in_both_orders(client, team, descending):
    now = timezone.now()
    # Pairs share a timestamp so the pk breaks ties across a page boundary.
    for i in range(35):
        make(team, when=now - timedelta(seconds=i // 2), seed=i)
    client.force_login(team["bob"])
    expected = list(
        Asset.objects.order_by(*(["-created_at", "-id"] if descending else ["created_at", "id"])).values_list(
            "id", flat=True
        )
    )
    order = "" if descending else "&order=oldest"
    seen: list[str] = []
    url = f"{API}?{order}"
    while url:
        body = client.get(url).json()
        seen += [r["id"] for r in body["results"]]
        url = f"{API}?cursor={body['next']}{order}" if body["next"] else ""
    assert seen == [str(pk) for pk in expected]
    # The page, by following its "next" links (which keep the filters).
    shown: list = []
    url = f"{PAGE}?{order}"
    while url:
        response = client.get(url)
        shown += [a.id for a in response.context["assets"]]
        url = PAGE + response.context["next_url"] if response.context["next_url"] else ""
        if url:
            assert ("order" in parse_qs(urlparse(url).query)) is not descending
    assert shown == expected


@pytest.mark.parametrize(
    ("query", "field", "shown"),
    [
        ("status=lost", "status", 6),
        ("author=nobody", "author", 6),
        ("model=x%20y", "model", 6),
        ("model=w%C3%B0%C3%AD", "model", 6),  # not ASCII: what the schema's pattern refuses, the API refuses
        ("since=2026-13-01", "since", 6),
        ("until=yesterday", "until", 6),
        ("since=2026-01-03&until=2026-01-01", "until", 2),  # the valid start date still applies
        ("order=random", "order", 6),
        ("q=" + "x" * 201, "q", 6),
        ("board=abc", "board", 6),
    ],
)
def test_bad_filters_are_a_400_in_the_api_and_a_message_on_the_page(client, story, query, field, shown):
    team, rows = story
    client.force_login(team["vera"])
    response = client.get(f"{API}?{query}")
    assert response.status_code == 400
    assert field in response.json()["errors"]
    page = client.get(f"{PAGE}?{query}")
    assert page.status_code == 200
    assert field in page.context["filters"].errors
    assert f'data-field="{field}"' in page.content.decode()
    assert len(page.context["assets"]) == shown  # the bad filter falls back to none


def test_a_bad_filter_leaves_the_good_ones_applied_on_the_page(client, story):
    team, rows = story
    client.force_login(team["vera"])
    assert page_names(client, rows, "status=approved&since=never") == ["sofa", "dog"]


def test_the_partial_page_is_cards_with_the_next_link_in_a_header(client, story):
    team, rows = story
    client.force_login(team["bob"])
    response = client.get(f"{PAGE}?partial=1&author=bob")
    html = response.content.decode()
    assert html.count('class="asset-card"') == 4
    assert "<html" not in html and "gallery-filters" not in html
    assert response["X-Next-Page"] == ""
    assert 'name="assets"' in html  # Bob may select his images for review on appended cards too


def test_the_filter_bar_keeps_the_choices_in_the_url(client, story):
    team, rows = story
    client.force_login(team["vera"])
    html = client.get(f"{PAGE}?author=alice&q=city&order=oldest").content.decode()
    assert '<option value="alice" selected>alice</option>' in html
    assert 'name="q" value="city"' in html
    assert '<option value="oldest" selected>' in html
    assert 'id="clear-filters"' in html
    assert 'data-first-page="false"' in html  # live-inserted new images would ignore the filters


def test_the_function_does_not_widen_access(story):
    team, rows = story
    from tests import factories

    other = factories.project(team["charlie"], "Secret")
    Asset.objects.filter(pk=make(team, "charlie", when=local(1, 1)).pk).update(project=other)
    queryset, cleaned = filtered_assets(team["vera"], team["project"], {"author": "charlie"})
    assert list(queryset) == []
    assert not cleaned.errors


@pytest.mark.parametrize("url", [PAGE, API])
@pytest.mark.parametrize(
    "query",
    ["", "status=draft&author=bob&model=demo&since=2026-01-01&until=2026-02-01&q=red", "order=oldest"],
)
def test_a_page_costs_the_same_queries_however_many_images(
    client, team, url, query, django_assert_num_queries, django_assert_max_num_queries
):
    client.force_login(team["bob"])
    counts = []
    for total in (3, 70):
        Asset.objects.all().delete()
        for i in range(total):
            make(team, when=local(5, 0) + timedelta(minutes=i), seed=i)
        first = client.get(f"{url}?{query}")
        assert first.status_code == 200
        with django_assert_max_num_queries(12) as captured:
            client.get(f"{url}?{query}")
        counts.append(len(captured.captured_queries))
    assert counts[0] == counts[1]
