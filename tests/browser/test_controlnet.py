"""ControlNet in the browser: with a ControlNet installed for the model, the generate form offers a ControlNet
unit; an artist adds one, uploads a sketch as its control image, picks line art, generates, and sees the
control map on the image's page."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageDraw
from playwright.sync_api import expect

from generation import library
from generation.models import Job
from tests import factories, library_models
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def installed_controlnet(stack, demo_model_dir, tmp_path):
    """A tiny ControlNet for the demo model in the stack's models dir, for this test only (other tests of
    the session list the models dir too)."""
    source = library_models.build_controlnet(demo_model_dir, tmp_path / "demo-lines")
    installed = library.do_install_controlnet(None, str(source), name="Demo lines", family="demo")
    yield installed
    library.do_remove(None, "controlnet", installed.id)


def sketch_png(tmp_path) -> str:
    image = Image.new("RGB", (64, 64), (250, 250, 250))
    draw = ImageDraw.Draw(image)
    draw.ellipse([12, 12, 52, 52], outline=(20, 20, 20), width=3)
    path = tmp_path / "sketch.png"
    image.save(path)
    return str(path)


def test_a_controlnet_unit_with_an_uploaded_sketch_and_its_map_on_the_asset_page(
    browser, stack, installed_controlnet, tmp_path
):
    alice, bob = factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")

    page = sign_in(browser, stack, "bob", "/p/poster/")
    field = page.locator("#controlnet-field")
    expect(field).to_be_visible()
    page.click("#controlnet-add")
    unit = page.locator(".controlnet-unit").first
    expect(unit.locator(".controlnet-unit-title")).to_have_text("Unit 1")
    expect(unit.locator('select[data-name="controlnet"]')).to_have_value(installed_controlnet.id)
    unit.locator('input[data-name="upload"]').set_input_files(sketch_png(tmp_path))
    expect(unit.locator(".controlnet-upload-status")).to_have_text("Uploaded.")
    expect(unit.locator(".controlnet-image-chosen")).to_be_visible()
    unit.locator('select[data-name="preprocessor"]').select_option("lineart")
    unit.locator('input[data-name="weight"]').fill("0.8")
    unit.locator('input[data-name="end"]').fill("0.9")

    # An unfinished second unit (no image) is refused beside the ControlNet field, then removed.
    page.click("#controlnet-add")
    page.fill("textarea[name=prompt]", "a red circle")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "3")
    page.click("#generate-btn")
    expect(page.locator('.field-error[data-field="controlnets"]')).to_contain_text("choose a control image")
    page.locator(".controlnet-unit").nth(1).locator(".controlnet-remove").click()
    expect(page.locator(".controlnet-unit")).to_have_count(1)

    page.click("#generate-btn")
    expect(page.locator("#job-link a")).to_be_visible()
    expect(page.locator("#results img.result-image")).to_be_visible(timeout=90_000)
    expect(page.locator("#status")).to_contain_text("Succeeded")

    job = Job.objects.get()
    (used,) = job.params["controlnets"]
    assert (used["id"], used["preprocessor"], used["weight"], used["end"]) == (
        installed_controlnet.id,
        "lineart",
        0.8,
        0.9,
    )
    asset = job.assets.get()
    page.goto(f"/assets/{asset.id}/")
    shown = page.locator(".control-unit .control-map img")
    expect(shown).to_be_visible()
    page.wait_for_function("() => document.querySelector('.control-unit .control-map img').naturalWidth > 0")
    expect(page.locator(".control-unit .control-name")).to_have_text("Demo lines")
    expect(page.locator(".control-unit a.control-image")).to_have_attribute(
        "href", f"/assets/{used['image']}/"
    )
    data = page.request.get(f"/assets/{asset.id}/controls/0.png").body()
    made = Image.open(io.BytesIO(data)).convert("L")
    assert made.size == (64, 64)
    assert set(made.getdata()) <= {0, 255} and 255 in set(made.getdata())  # white lines on black
