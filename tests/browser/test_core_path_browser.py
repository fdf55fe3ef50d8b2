"""A person in Debian's chromium: sign in, generate, watch it form, find it in the gallery; a second member
watches the same job; an outsider gets 404."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_sign_in_generate_watch_and_find_it_in_the_gallery(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    factories.user("charlie")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")

    page = sign_in(browser, stack, "alice", "/p/poster/")
    expect(page).to_have_url(re.compile(r"/p/poster/$"))
    page.fill("textarea[name=prompt]", "a red circle on a blue background")
    page.fill("input[name=width]", "128")
    page.fill("input[name=height]", "128")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "150")
    page.fill("input[name=seed]", "2024")
    page.click("#generate-btn")

    # A second member opens the same job while it runs and watches it live.
    page.wait_for_selector("#job-link a")
    job_url = page.get_attribute("#job-link a", "href")
    watcher = sign_in(browser, stack, "bob", job_url)

    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)
    frames = int(page.get_attribute("#preview", "data-frames") or 0)
    assert frames >= 3, f"only {frames} distinct preview frames before the final image"
    expect(page.locator("#preview")).to_be_hidden()
    expect(page.locator("#progress-text")).to_have_text("step 150 / 150")
    expect(page.locator("#status")).to_contain_text("Succeeded")

    expect(watcher.locator("#results img.result-image")).to_be_visible(timeout=30_000)
    assert int(watcher.get_attribute("#preview", "data-frames") or 0) >= 1

    job = Job.objects.get()
    asset = job.assets.get()
    assert job.params["seed"] == 2024

    page.goto("/p/poster/gallery/")
    card = page.locator(f'.asset-card[data-asset-id="{asset.id}"]')
    expect(card).to_be_visible()
    card.locator("a").first.click()
    expect(page).to_have_url(re.compile(rf"/assets/{asset.id}/$"))
    # The URL changes before the image has loaded: wait for it, then check what it shows.
    page.wait_for_function("() => document.querySelector('#asset-image')?.complete")
    assert page.eval_on_selector("#asset-image", "img => img.complete && img.naturalWidth") == 128
    expect(page.locator("#provenance")).to_contain_text("2024")

    # Reproduce fills the form with the same parameters.
    page.click("#reproduce")
    expect(page.locator("textarea[name=prompt]")).to_have_value("a red circle on a blue background")
    expect(page.locator("input[name=seed]")).to_have_value("2024")

    outsider = sign_in(browser, stack, "charlie", "/")
    for url in (job_url, f"/assets/{asset.id}/", f"/assets/{asset.id}/image.png", "/p/poster/gallery/"):
        response = outsider.goto(url)
        assert response is not None and response.status == 404, url
