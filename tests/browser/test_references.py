"""Reference images in the browser: an artist adds a reference on the generate form, uploads it, sets its
weight, generates, and sees the reference named on the image's page."""

from __future__ import annotations

import pytest
from PIL import Image
from playwright.sync_api import expect

from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_uploaded_reference_steers_a_job_and_its_page_names_it(browser, stack, tmp_path):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    swatch = tmp_path / "swatch.png"
    Image.new("RGB", (64, 64), (220, 20, 20)).save(swatch)

    page = sign_in(browser, stack, "bob", "/p/poster/")
    expect(page.locator("#references-field")).to_be_visible()
    page.click("#reference-add")
    row = page.locator(".reference-row").first
    row.locator("input.reference-upload").set_input_files(str(swatch))
    expect(row.locator(".reference-status")).to_have_text("Uploaded.")
    expect(row.locator(".reference-chosen")).to_be_visible()
    # The upload joins the project's images in the row's own picker, chosen.
    expect(row.locator('.reference-grid button[aria-pressed="true"]')).to_have_count(1)
    row.locator("input.reference-weight").fill("1.5")
    page.fill("textarea[name=prompt]", "a circle")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "3")
    page.click("#generate-btn")
    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)
    expect(page.locator("#status")).to_contain_text("Succeeded")

    job = Job.objects.get()
    (used,) = job.params["references"]
    assert (used["kind"], used["weight"]) == ("reference", 1.5)
    asset = job.assets.get()
    page.goto(f"/assets/{asset.id}/")
    expect(page.locator("#asset-references .asset-reference")).to_contain_text("weight 1.5")
    expect(page.locator("#asset-references a")).to_have_attribute("href", f"/assets/{used['image']}/")
