"""Every page of the studio, in Debian's chromium, under its Content-Security-Policy: not one violation,
including a live preview on the generate page, the mask editor, compare, an export and the admin area.

The browser reports each ``securitypolicyviolation`` (and chromium logs a console error for it); the test
collects both from every page it opens. At the end it plants an inline script on purpose, to show that a
violation would have been caught."""

from __future__ import annotations

import re

import pytest
from django.urls import URLResolver, resolve
from playwright.sync_api import expect

from gallery import services as gallery_services
from gallery.models import Asset
from generation import styles
from generation.models import Job
from generation.schemas import StyleIn
from studio.urls import pages
from tests import factories

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Page URLs that are not pages to look at: forms' POST targets, file downloads, Django's own admin site.
NOT_PAGES = {
    "logout", "account-token-create", "account-token-revoke", "account-password", "asset-submit",
    "asset-review", "asset-comment", "asset-delete", "gallery-submit", "notifications-read", "board-create",
    "board-remove", "board-delete", "asset-board", "asset-tag", "asset-untag", "asset-favourite",
    "manage-model-remove", "project-delete", "manage-audit-export", "asset-image", "asset-thumb",
    "asset-mask", "asset-control-map", "style-delete",
}  # fmt: skip

LISTEN = """
document.addEventListener("securitypolicyviolation", (e) => {
  const what = e.blockedURI || "inline code";
  window.reportViolation(`${e.violatedDirective} blocked ${what} on ${location.pathname}`);
});
"""


def page_names() -> set[str]:
    return {p.name for p in pages if not isinstance(p, URLResolver) and p.name} - NOT_PAGES


def test_no_page_violates_the_content_security_policy(browser, stack):
    root, alice, bob = factories.user("root", admin=True), factories.user("alice"), factories.user("bob")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")
    start = factories.asset(project, bob, prompt="a red circle")

    violations: list[str] = []
    context = browser.new_context(base_url=stack.base_url)
    context.expose_function("reportViolation", lambda text: violations.append(text))
    context.add_init_script(LISTEN)
    page = context.new_page()
    page.on("console", lambda m: "Content Security Policy" in m.text and violations.append(m.text))
    seen: set[str] = set()

    def visit(path: str, status: int = 200):
        response = page.goto(path)
        assert response is not None and response.status == status, path
        assert "default-src 'self'" in (response.headers.get("content-security-policy") or ""), path
        seen.add(resolve(path.split("?")[0]).url_name or "")
        page.wait_for_load_state("load")

    visit("/accounts/login/")
    page.fill("input[name=username]", "root")
    page.fill("input[name=password]", "correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/$"))

    # Generate with a live preview: two images from the demo model, watched as they form.
    visit("/p/poster/")
    page.fill("textarea[name=prompt]", "a blue square on a yellow background")
    page.fill("input[name=num_images]", "2")
    page.fill("input[name=width]", "64")
    page.fill("input[name=height]", "64")
    page.locator("details#advanced summary").click()
    page.fill("input[name=steps]", "60")
    page.click("#generate-btn")
    expect(page.locator("#preview")).not_to_have_attribute("data-frames", "0", timeout=60_000)
    expect(page.locator("#results img.result-image")).to_have_count(2, timeout=90_000)
    job = Job.objects.get()
    first, second = job.assets.order_by("index")
    gallery_services.do_submit(root, first)
    gallery_services.do_review(root, first, "approve", "")
    board = gallery_services.do_create_board(root, project, "Picks")
    gallery_services.do_add_to_board(root, board, first)
    visit(f"/jobs/{job.id}/")

    visit("/p/poster/gallery/")
    page.click("#export-approved")
    expect(page.locator("#export-status")).to_contain_text("exported", timeout=30_000)
    visit(f"/p/poster/compare/?ids={first.id},{second.id}")
    expect(page.locator("#compare-table img").first).to_be_visible()
    visit(f"/assets/{first.id}/")
    page.locator(".fav-form button").first.click()
    visit("/p/poster/boards/")
    visit(f"/boards/{board.id}/")
    style = styles.do_create_style(
        root, project, StyleIn(name="Ink", prompt_prefix="ink", locks=["prompt_prefix"])
    )
    visit("/p/poster/styles/")
    visit(f"/styles/{style.id}/")

    # The mask editor, with a stroke painted on it.
    visit(f"/p/poster/?init={start.id}&mode=inpaint")
    canvas = page.locator("#mask-canvas")
    expect(canvas).to_be_visible()
    canvas.evaluate("c => c.scrollIntoView({block: 'center'})")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 60, box["y"] + 80)
    page.mouse.up()
    assert page.evaluate("StudioModes.maskDataURL()").startswith("data:image/png;base64,")

    for path in ("/", "/help/permissions/", "/help/privacy/", "/p/poster/settings/", "/account/",
                 "/notifications/"):  # fmt: skip
        visit(path)
    # The verify page, with a report of an image's credentials and its chain.
    visit("/verify/")
    with first.file.open("rb") as stored:
        made = stored.read()
    image = {"name": "made.png", "mimeType": "image/png", "buffer": made}
    page.set_input_files("#verify-image", files=[image])
    page.click("#verify-submit")
    expect(page.locator("#verify-state")).to_have_text("Valid and trusted")
    visit("/manage/")  # redirects to the users page
    for path in ("/manage/users/", "/manage/users/new/", "/manage/users/bob/deactivate/",
                 "/manage/users/bob/mfa-reset/", "/manage/usage/",
                 "/manage/audit/", "/manage/quotas/", "/manage/models/", "/manage/workers/"):  # fmt: skip
        visit(path)
    visit("/p/no-such-project/", status=404)
    assert Asset.objects.filter(job=job).count() == 2

    assert violations == []
    assert page_names() - seen == set(), "pages this test does not visit yet"

    # The listener works: an inline script is refused and reported.
    page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.x = 1'; "
                  "document.body.append(s); }")  # fmt: skip
    page.wait_for_timeout(500)
    assert any("script-src" in v for v in violations), violations
    assert page.evaluate("window.x") is None
    context.close()
