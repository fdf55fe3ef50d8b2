"""Reviews in the browser: Alice approves Bob's submitted image; Bob's open gallery and image page show the
new status without reloading; Bob, an artist, never sees the decision buttons."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from gallery.models import AssetStatus, Notification
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_approves_and_the_artists_open_pages_follow_live(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    asset = factories.asset(project, bob, status=AssetStatus.SUBMITTED, prompt="a red circle")

    gallery = sign_in(browser, stack, "bob", "/p/poster/gallery/")
    expect(gallery).to_have_url(re.compile(r"/p/poster/gallery/$"))
    card = gallery.locator(f'.asset-card[data-asset-id="{asset.id}"]')
    expect(card.locator(".badge")).to_have_text("Submitted")
    expect(gallery.locator("#gallery-page[data-live=true]")).to_have_count(1)
    gallery.evaluate("window.notReloaded = true")

    # Bob's own image page: status and history, but no decision buttons for an artist.
    bobs_asset_page = gallery.context.new_page()
    bobs_asset_page.goto(f"/assets/{asset.id}/")
    expect(bobs_asset_page.locator("#review-status")).to_have_text("Submitted")
    expect(bobs_asset_page.locator("#review[data-live=true]")).to_have_count(1)
    expect(bobs_asset_page.locator("#approve-btn")).to_have_count(0)
    expect(bobs_asset_page.locator("#decision-form")).to_have_count(0)

    lead = sign_in(browser, stack, "alice", f"/assets/{asset.id}/")
    expect(lead).to_have_url(re.compile(rf"/assets/{asset.id}/$"))
    lead.fill("#review-comment", "Exactly the red we wanted.")
    lead.click("#approve-btn")
    expect(lead.locator("#review-status")).to_have_text("Approved")
    expect(lead.locator("#review-history")).to_contain_text("Exactly the red we wanted.")

    # Bob's pages follow without a reload.
    expect(card.locator(".badge")).to_have_text("Approved", timeout=10_000)
    expect(card.locator(".badge")).to_have_class(re.compile(r"status-approved"))
    assert gallery.evaluate("window.notReloaded") is True
    expect(bobs_asset_page.locator("#review-status")).to_have_text("Approved", timeout=10_000)
    expect(bobs_asset_page.locator("#review-history")).to_contain_text("alice")
    expect(bobs_asset_page.locator("#review-history")).to_contain_text("Exactly the red we wanted.")

    # And the header tells him on his next page.
    assert Notification.objects.filter(user=bob, read_at__isnull=True).count() == 1
    bobs_asset_page.goto("/notifications/")
    expect(bobs_asset_page.locator("#notification-list")).to_contain_text("approved")
    expect(bobs_asset_page.locator("#unread-count")).to_have_text("1")
    bobs_asset_page.click("#mark-read")
    expect(bobs_asset_page.locator("#unread-count")).to_have_count(0)


def test_a_deleted_image_leaves_open_galleries_and_its_open_page_says_so(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    kept = factories.asset(project, bob, prompt="a blue square")
    doomed = factories.asset(project, bob, prompt="a red circle")

    gallery = sign_in(browser, stack, "bob", "/p/poster/gallery/")
    expect(gallery.locator(".asset-card")).to_have_count(2)
    expect(gallery.locator("#gallery-page[data-live=true]")).to_have_count(1)
    gallery.evaluate("window.notReloaded = true")
    page = gallery.context.new_page()
    page.goto(f"/assets/{doomed.id}/")
    expect(page.locator("#review[data-live=true]")).to_have_count(1)

    lead = sign_in(browser, stack, "alice", f"/assets/{doomed.id}/")
    # An upload appears live on Bob's first page as an upload (no model or seed).
    png = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(png, format="PNG")
    csrf = next(c["value"] for c in lead.context.cookies() if c["name"] == "csrftoken")
    uploaded = lead.context.request.post(
        "/api/v1/projects/poster/uploads",
        headers={"X-CSRFToken": csrf},
        multipart={"image": {"name": "sketch.png", "mimeType": "image/png", "buffer": png.getvalue()}},
    )
    assert uploaded.status == 201, uploaded.text()
    new_card = gallery.locator(f'.asset-card[data-asset-id="{uploaded.json()["id"]}"]')
    expect(new_card.locator(".asset-kind")).to_have_text("Uploaded · sketch.png", timeout=10_000)
    expect(new_card.locator(".asset-seed")).to_have_count(0)

    lead.click("#delete-asset summary")
    lead.click("#delete-confirm")
    expect(lead).to_have_url(re.compile(r"/p/poster/gallery/$"))

    expect(gallery.locator(f'.asset-card[data-asset-id="{doomed.id}"]')).to_have_count(0, timeout=10_000)
    expect(gallery.locator(f'.asset-card[data-asset-id="{kept.id}"]')).to_have_count(1)
    expect(gallery.locator(".asset-card")).to_have_count(2)  # the upload and the kept image
    assert gallery.evaluate("window.notReloaded") is True
    expect(page.locator("#asset-deleted")).to_contain_text("This image was deleted.", timeout=10_000)
    expect(page.locator("#asset-deleted a")).to_have_attribute("href", "/p/poster/gallery/")
    expect(page.locator("#download")).to_be_hidden()
    expect(page.locator("#comment-form")).to_be_hidden()

    # The API's DELETE announces it the same way; the last card gone, the gallery says it is empty.
    for asset_id in (kept.id, uploaded.json()["id"]):
        response = lead.context.request.delete(f"/api/v1/assets/{asset_id}", headers={"X-CSRFToken": csrf})
        assert response.status == 204
    expect(gallery.locator(".asset-card")).to_have_count(0, timeout=10_000)
    expect(gallery.locator("#gallery-empty")).to_be_visible()
