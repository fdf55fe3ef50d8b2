"""Regional prompts in the browser: add two regions, paint each over its half of the picture in its own
colour, give them prompts and weights, generate, and find the regions in the image's provenance."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from playwright.sync_api import expect

from gallery.services import asset_storage
from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def paint_half(page, canvas, side: str) -> None:
    """Strokes down the left or right half of a canvas, across most of that half's width."""
    canvas.evaluate("c => c.scrollIntoView({block: 'center'})")
    box = canvas.bounding_box()
    columns = [0.1, 0.25, 0.4] if side == "left" else [0.6, 0.75, 0.9]
    for fraction in columns:
        x = box["x"] + box["width"] * fraction
        page.mouse.move(x, box["y"] + box["height"] * 0.05)
        page.mouse.down()
        for i in range(1, 10):
            page.mouse.move(x, box["y"] + box["height"] * (0.05 + 0.1 * i))
        page.mouse.up()


def test_paint_two_regions_generate_and_find_them_in_the_provenance(browser, stack):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")

    page = sign_in(browser, stack, "bob", "/p/poster/")
    expect(page.locator("#regions-field")).to_be_visible()
    expect(page.locator("#regions-editor")).to_be_hidden()  # no region yet
    page.fill("textarea[name=prompt]", "a small white circle")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "3")
    page.fill("input[name=seed]", "4")
    page.locator("#f-region-brush").evaluate("el => { el.value = 40; el.dispatchEvent(new Event('input')); }")

    page.click("#region-add")
    rows = page.locator("#region-list .region-row")
    canvases = page.locator("#regions-editor canvas")
    expect(rows).to_have_count(1)
    expect(page.locator("#regions-editor")).to_be_visible()
    expect(rows.nth(0).locator(".region-select")).to_have_attribute("aria-pressed", "true")
    paint_half(page, canvases.nth(0), "left")
    rows.nth(0).locator(".region-prompt").fill("a small white circle on a red background")

    page.click("#region-add")
    expect(rows).to_have_count(2)
    expect(rows.nth(1).locator(".region-select")).to_have_attribute("aria-pressed", "true")
    paint_half(page, canvases.nth(1), "right")
    rows.nth(1).locator(".region-prompt").fill("a small white circle on a blue background")
    rows.nth(1).locator(".region-weight").fill("1.5")

    # Each region is shown in its own colour; a third added and removed leaves the two.
    colours = canvases.evaluate_all("cs => cs.map(c => c.dataset.colour)")
    assert len(set(colours)) == 2
    swatches = rows.locator(".region-swatch").evaluate_all("ss => ss.map(s => s.style.background)")
    assert len(set(swatches)) == 2
    page.click("#region-add")
    expect(rows).to_have_count(3)
    rows.nth(2).locator(".region-remove").click()
    expect(rows).to_have_count(2)
    expect(canvases).to_have_count(2)

    page.click("#generate-btn")
    expect(page.locator("#job-link a")).to_be_visible()
    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)
    expect(page.locator("#status")).to_contain_text("Succeeded")

    job = Job.objects.get()
    regions = job.params["regions"]
    assert [r["prompt"] for r in regions] == [
        "a small white circle on a red background",
        "a small white circle on a blue background",
    ]
    assert [r["weight"] for r in regions] == [1.0, 1.5]
    assert all(len(r["mask_sha256"]) == 64 for r in regions)
    assert not any(asset_storage().exists(r["mask"]) for r in regions)  # gone once the job finished
    child = job.assets.get()
    with child.file.open("rb") as fh:
        assert Image.open(io.BytesIO(fh.read())).size == (64, 64)

    page.goto(f"/assets/{child.id}/")
    shown = page.locator("#asset-regions li")
    expect(shown).to_have_count(2)
    expect(shown.nth(0)).to_contain_text("a small white circle on a red background")
    expect(shown.nth(0)).to_contain_text("(weight 1.0)")
    expect(shown.nth(1)).to_contain_text("a small white circle on a blue background")
    expect(shown.nth(1)).to_contain_text("(weight 1.5)")
    sha = regions[1]["mask_sha256"]
    expect(shown.nth(1).locator("code.hash")).to_have_attribute("title", f"sha256 {sha}")
