"""Inpainting in the browser: from an image's page, "Inpaint" opens the generate page with the image under a
mask editor; a painted stroke becomes the mask, the job runs, and the new image's page links to its parent."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from playwright.sync_api import expect

from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_inpaint_a_painted_area_and_find_the_parent(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    start = factories.asset(project, bob, prompt="a red circle")

    page = sign_in(browser, stack, "bob", f"/assets/{start.id}/")
    expect(page).to_have_url(re.compile(rf"/assets/{start.id}/$"))
    page.click("#inpaint")
    expect(page).to_have_url(re.compile(r"/p/poster/\?init="))
    expect(page.locator("#f-mode")).to_have_value("inpaint")
    expect(page.locator("#f-init-asset")).to_have_value(str(start.id))
    expect(page.locator("textarea[name=prompt]")).to_have_value("a red circle")
    canvas = page.locator("#mask-canvas")
    expect(canvas).to_be_visible()
    assert page.eval_on_selector("#mask-base", "img => img.complete && img.naturalWidth") == 64

    # Generating before painting is refused beside the mask.
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "4")
    page.click("#generate-btn")
    expect(page.locator('.field-error[data-field="mask"]')).to_have_text("Paint the area to repaint first.")

    # Invert paints everything, Clear nothing.
    page.click("#mask-invert")
    assert page.evaluate("StudioModes.maskDataURL()").startswith("data:image/png;base64,")
    page.click("#mask-clear")
    assert page.evaluate("StudioModes.maskDataURL()") == ""

    # A vertical stroke down the left part of the image (centred in the window, clear of the sticky header).
    canvas.evaluate("c => c.scrollIntoView({block: 'center'})")
    box = canvas.bounding_box()
    assert box is not None and box["width"] >= 300
    x = box["x"] + box["width"] * 0.2
    page.mouse.move(x, box["y"] + box["height"] * 0.1)
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(x, box["y"] + box["height"] * (0.1 + 0.1 * i))
    page.mouse.up()
    page.click("#generate-btn")
    expect(page.locator("#job-link a")).to_be_visible()  # the job was accepted: the mask had paint
    expect(page.locator('.field-error[data-field="mask"]')).to_have_count(0)
    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)
    expect(page.locator("#status")).to_contain_text("Succeeded")

    job = Job.objects.get()
    assert job.params["mode"] == "inpaint"
    child = job.assets.get()
    assert child.parent_id == start.id
    with child.mask.open("rb") as fh:
        mask = Image.open(io.BytesIO(fh.read())).convert("L")
    assert mask.size == (64, 64)
    assert mask.getpixel((13, 32)) == 255  # under the stroke
    assert mask.getpixel((55, 32)) == 0  # far from it

    page.goto(f"/assets/{child.id}/")
    expect(page.locator("#asset-mask img")).to_be_visible()
    parent_link = page.locator("#parent-link")
    expect(parent_link).to_have_attribute("href", f"/assets/{start.id}/")
    parent_link.click()
    expect(page).to_have_url(re.compile(rf"/assets/{start.id}/$"))
