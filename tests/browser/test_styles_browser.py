"""Styles in the browser: Alice (lead) defines "Ink" on the styles page with its model locked; Bob (artist)
picks it on the generate form, sees the model locked, generates, and finds the style and its version in the
image's provenance."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from generation.models import Job, Style
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_lead_defines_a_style_and_an_artists_image_names_it(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")

    lead = sign_in(browser, stack, "alice", "/p/poster/settings/")
    lead.click("#manage-styles")
    expect(lead).to_have_url(re.compile(r"/p/poster/styles/$"))
    lead.fill("#s-name", "Ink")
    lead.fill("#s-prefix", "ink drawing")
    lead.fill("#s-suffix", "high contrast")
    lead.select_option("#s-model", "demo")
    lead.check("#s-lock-model")
    lead.click("#style-save")
    expect(lead.locator(".styles-table")).to_contain_text("Ink")
    style = Style.objects.get(project=project, name="Ink")

    page = sign_in(browser, stack, "bob", "/p/poster/")
    page.select_option("#f-style", str(style.id))
    expect(page.locator("#f-model")).to_be_disabled()
    expect(
        page.locator("#f-model").locator("xpath=ancestor::div[contains(@class,'field')][1]")
    ).to_contain_text("Locked by the style")
    expect(page.locator("#f-prompt-prefix")).to_have_value("ink drawing")
    page.fill("textarea[name=prompt]", "a red circle")
    page.fill("input[name=width]", "128")
    page.fill("input[name=height]", "128")
    page.click("#generate-btn")
    page.wait_for_selector("#job-link a")
    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)

    job = Job.objects.get()
    assert job.params["prompt"] == "ink drawing, a red circle, high contrast"
    asset = job.assets.get()
    page.goto(f"/assets/{asset.id}/")
    expect(page.locator("#asset-style")).to_have_text("Ink (version 1)")
