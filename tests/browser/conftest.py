"""Debian's chromium through Playwright, and signing in as a person does."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.integration.stack import chromium_path

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        pytest.fail("Debian's chromium is not installed (apt-get install -y chromium)")
    # Playwright's sync API keeps an event loop in this thread; the test's own ORM calls are still plain
    # synchronous code, so Django's async-safety guard does not apply to them.
    with pytest.MonkeyPatch.context() as mp, sync_playwright() as p:
        mp.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        b = p.chromium.launch(executable_path=path, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def sign_in(browser, stack, username: str, next_path: str):
    page = browser.new_context(base_url=stack.base_url).new_page()
    page.goto(next_path)
    expect(page).to_have_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", "correct horse battery")
    page.get_by_role("button", name="Sign in").click()
    return page
