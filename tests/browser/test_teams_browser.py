"""Teams in the browser: an admin lowers an artist's quota and the artist is told why; a lead adds a viewer
who can watch but not generate; open pages hear at once when their person's role changes or ends."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from generation import services
from generation.models import Job
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_quota_refusal_and_a_watching_viewer(browser, stack):
    factories.user("root", admin=True)
    alice, bob = factories.user("alice"), factories.user("bob")
    factories.user("vera")
    project = factories.project(alice, "Poster")
    factories.member(project, bob, "artist")

    admin = sign_in(browser, stack, "root", "/manage/quotas/")
    form = admin.locator("#form-user")
    form.locator("input[name=username]").fill("bob")
    form.locator("input[name=images]").fill("0")
    form.get_by_role("button", name="Save").click()
    expect(admin.locator("#quota-overrides")).to_contain_text("user bob")

    artist = sign_in(browser, stack, "bob", "/p/poster/")
    expect(artist.locator("#quota-left")).to_contain_text("You have 0 of 0 images left")
    artist.fill("textarea[name=prompt]", "a blue square")
    artist.click("#generate-btn")
    expect(artist.locator("#form-error")).to_contain_text(
        re.compile(r"Your monthly image quota is used up: 0 of 0 images used; it resets on \d{4}-\d\d-\d\d")
    )
    assert Job.objects.count() == 0

    lead = sign_in(browser, stack, "alice", "/p/poster/settings/")
    lead.fill("#member-username", "vera")
    lead.select_option("#member-role", "viewer")
    lead.get_by_role("button", name="Add member").click()
    expect(lead.locator("#member-vera select[name=role]")).to_have_value("viewer")

    job = services.do_create_job(
        alice, project, {"prompt": "a yellow star", "steps": 60, "width": 128, "height": 128}
    )
    viewer = sign_in(browser, stack, "vera", "/p/poster/")
    notice = "Viewers can watch this project's jobs but not generate."
    expect(viewer.locator(".notice")).to_contain_text(notice)
    expect(viewer.locator("#generate-form")).to_have_count(0)
    viewer.goto(f"/jobs/{job.id}/")
    expect(viewer.locator("#results img.result-image")).to_be_visible(timeout=60_000)
    expect(viewer.locator("#cancel-btn")).to_be_hidden()

    # Open pages follow access: Bob's gallery is told his new role, Vera's that her access ended.
    artist.goto("/p/poster/gallery/")
    viewer.goto("/p/poster/gallery/")
    for page in (artist, viewer):
        expect(page.locator("#gallery-page[data-live=true]")).to_have_count(1)
    lead.locator("#member-bob select[name=role]").select_option("viewer")
    lead.locator("#member-bob").get_by_role("button", name="Change").click()
    expect(artist.locator("#access-notice")).to_contain_text("Your role in this project is now viewer.")
    lead.once("dialog", lambda dialog: dialog.accept())
    lead.locator("#member-vera").get_by_role("button", name="Remove").click()
    expect(viewer.locator("#access-notice")).to_contain_text("You no longer have access to this page.")
    expect(viewer.locator("#access-notice a")).to_have_text("Reload the page")
