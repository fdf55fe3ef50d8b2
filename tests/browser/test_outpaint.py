"""Extending the canvas in the browser: pick one of the project's images, add pixels on a side (the form
shows the size it makes, and an aspect ratio fills the sides in), generate, and see the image at the new
size, linked to its parent."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_extend_a_picked_image_and_see_it_at_the_new_size(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    start = factories.asset(project, bob, prompt="a red circle")

    page = sign_in(browser, stack, "bob", "/p/poster/")
    page.select_option("#f-mode", "outpaint")
    expect(page.locator("#outpaint-field")).to_be_visible()
    expect(page.locator("#mask-field")).to_be_hidden()
    expect(page.locator("#f-width")).to_be_disabled()
    expect(page.locator("#outpaint-size")).to_have_text("choose a start image")

    page.locator("#start-image-picker summary").click()
    page.click(f'#start-image-grid button[data-asset-id="{start.id}"]')
    expect(page.locator("#f-init-asset")).to_have_value(str(start.id))
    expect(page.locator("#outpaint-size")).to_have_text("64 × 64 → 64 × 64")

    # An aspect ratio fills in the sides it grows (centred), and the pixels take over again without it.
    page.select_option("#f-aspect", "16:9")
    expect(page.locator("#outpaint-size")).to_have_text("64 × 64 → 112 × 64")
    expect(page.locator("#f-extend-left")).to_have_value("24")
    expect(page.locator("#f-extend-left")).to_be_disabled()
    page.select_option("#f-aspect", "")
    page.fill("#f-extend-left", "0")
    page.fill("#f-extend-right", "30")
    page.fill("textarea[name=prompt]", "a red circle on a blue background")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "4")

    # Not a multiple of 8: refused beside the extent.
    page.click("#generate-btn")
    expect(page.locator('.field-error[data-field="extend"]')).to_contain_text("multiple of 8")

    page.fill("#f-extend-right", "32")
    expect(page.locator("#outpaint-size")).to_have_text("64 × 64 → 96 × 64")
    page.click("#generate-btn")
    expect(page.locator("#job-link a")).to_be_visible()
    result = page.locator("#results img.result-image")
    expect(result).to_be_visible(timeout=90_000)
    expect(page.locator("#status")).to_contain_text("Succeeded")
    page.wait_for_function("() => document.querySelector('#results img.result-image').naturalWidth > 0")
    natural = result.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    assert natural == [96, 64]

    job = Job.objects.get()
    assert job.params["mode"] == "outpaint"
    assert job.params["extend"] == {"left": 0, "right": 32, "top": 0, "bottom": 0}
    child = job.assets.get()
    assert child.parent_id == start.id
    assert (child.width, child.height) == (96, 64)
    with child.file.open("rb") as fh:
        made = Image.open(io.BytesIO(fh.read())).convert("RGB")
    with start.file.open("rb") as fh:
        original = Image.open(io.BytesIO(fh.read())).convert("RGB")
    assert made.crop((0, 0, 64, 64)).tobytes() == original.tobytes()

    page.goto(f"/assets/{child.id}/")
    expect(page.locator("#parent-link")).to_have_attribute("href", f"/assets/{start.id}/")
