"""Infinite scroll in the browser: scrolling to the bottom of the gallery appends the older pages in order,
with no card twice and the filters kept, until the oldest image; then the "Older images" link goes away."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from gallery.models import Asset
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _cards(page) -> list[str]:
    return page.locator("#asset-grid .asset-card").evaluate_all("nodes => nodes.map(n => n.dataset.assetId)")


def _scroll_until(page, count: int) -> None:
    """Keep scrolling to the bottom, as a reader would, until ``count`` cards are on the page."""
    page.wait_for_function(
        """n => {
            window.scrollTo(0, document.body.scrollHeight);
            return document.querySelectorAll("#asset-grid .asset-card").length >= n;
        }""",
        arg=count,
        timeout=15_000,
    )


def test_scrolling_loads_every_older_page_once_in_order_with_filters_kept(browser, stack):
    alice = factories.user("alice")
    project = factories.project(alice, "Poster")
    start = timezone.now() - dt.timedelta(days=1)
    made = []
    for i in range(60):  # two and a half pages of 24
        subject = "cat" if i % 2 else "boat"
        asset = factories.asset(project, alice, prompt=f"a {subject} number {i}")
        Asset.objects.filter(pk=asset.pk).update(created_at=start + dt.timedelta(minutes=i))
        made.append((subject, str(asset.id)))
    newest_first = [asset_id for _, asset_id in reversed(made)]

    page = sign_in(browser, stack, "alice", "/p/poster/gallery/")
    expect(page.locator("#asset-grid .asset-card")).to_have_count(24)
    expect(page.locator("#next-page")).to_have_count(1)

    _scroll_until(page, 60)
    expect(page.locator("#next-page")).to_have_count(0)  # the oldest page came: nothing more to load
    assert _cards(page) == newest_first  # every card once, newest first, across the page joins

    # A search narrows the scroll too: only the 30 cats, still newest first.
    page.goto("/p/poster/gallery/?q=cat")
    expect(page.locator("#asset-grid .asset-card")).to_have_count(24)
    _scroll_until(page, 30)
    expect(page.locator("#next-page")).to_have_count(0)  # the last page has come: nothing more will arrive
    cats = [asset_id for subject, asset_id in reversed(made) if subject == "cat"]
    assert _cards(page) == cats
    # Let the last thumbnails arrive before the database is emptied for the next test: a request still
    # reading it then would deadlock with the emptying.
    page.wait_for_load_state("networkidle")
    page.context.close()
