"""Manage → Workers in the browser: root watches the fleet, a worker on another host appears live with the job
it runs and whose it is, and is marked gone once it stops telling its state."""

from __future__ import annotations

import re
import threading
import uuid
from types import SimpleNamespace

import pytest
from django.conf import settings
from django.core.cache import cache
from playwright.sync_api import expect

from generation import fleet
from tests import factories
from tests.browser.conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

NAME = "gpu7@render-node-7"


class FakeWorker:
    """A worker publishing its state every beat, to the stack's Redis (the test settings' REDIS_URL), from
    threads of its own: Playwright's sync API keeps an event loop running in the test's thread, where the
    channel layer's ``async_to_sync`` refuses to run. Its pool is one no job of the stack is routed to."""

    def __init__(self, name: str) -> None:
        self.reporter = fleet.Reporter()
        self.reporter.name = name
        self.reporter.pool = "render-farm"
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        self.reporter.publish()
        while not self.stopped.wait(settings.STUDIO_WORKER_BEAT_SECONDS):
            self.reporter.publish()

    def start(self) -> None:
        self.thread.start()

    def call(self, method: str, *args: object) -> None:
        """A pipeline call starts or ends (each publishes at once)."""
        thread = threading.Thread(target=getattr(self.reporter, method), args=args)
        thread.start()
        thread.join(60)

    def stop(self) -> None:
        self.stopped.set()
        if self.thread.is_alive():
            self.thread.join(60)


def test_a_worker_appears_live_and_is_marked_gone_when_it_stops(browser, stack, monkeypatch):
    factories.user("root", admin=True)
    alice = factories.user("alice")
    project = factories.project(alice, "Poster")

    page = sign_in(browser, stack, "root", "/manage/users/")
    page.locator(".sub-nav").get_by_role("link", name="Workers").click()
    expect(page).to_have_url(re.compile(r"/manage/workers/$"))
    expect(page.locator("#workers-page[data-live=true]")).to_have_count(1)  # the socket's snapshot came
    row = page.locator(f'tr[data-worker="{NAME}"]')
    expect(row).to_have_count(0)

    # A worker on another host starts, and its first call runs Alice's job.
    monkeypatch.setenv("STUDIO_WORKER_HOST", "render-node-7")
    worker = FakeWorker(NAME)
    job = SimpleNamespace(
        id=uuid.uuid4(), created_by=alice, project=project, model_id="demo", params={"num_images": 3}
    )
    try:
        worker.start()
        expect(row).to_have_count(1, timeout=30_000)  # its first state loads the engine (torch)
        expect(row.locator('[data-field="host"]')).to_have_text("render-node-7")
        expect(row.locator('[data-field="pool"]')).to_have_text("render-farm")
        expect(row.locator('[data-field="memory"]')).to_contain_text(" free of ")
        expect(row.locator('[data-field="idle"]')).to_be_visible()
        expect(row).to_have_attribute("data-gone", "false")
        expect(page.locator("#workers-empty")).to_be_hidden()

        worker.call("running", [job])
        expect(row.locator('[data-field="user"]')).to_have_text("alice")
        expect(row.locator('[data-field="user"]')).to_have_attribute("href", f"/jobs/{job.id}/")
        expect(row.locator('[data-field="project"]')).to_have_text("poster")
        expect(row.locator('[data-field="images"]')).to_have_text("3 images")
        expect(row.locator('[data-field="idle"]')).to_be_hidden()
        expect(row.locator('[data-field="last_heartbeat"]')).to_have_text(re.compile(r"^\d+ s ago$"))

        # Its call ends: the row says so at once.
        worker.call("finished", 1, 3)
        expect(row.locator('[data-field="idle"]')).to_be_visible()
        expect(row.locator('[data-field="images_per_hour"]')).to_have_text("3")
        expect(row).to_have_attribute("data-gone", "false")

        # It stops: nothing is sent, and the page marks it gone once three beats have passed.
        worker.stop()
        beats = settings.STUDIO_WORKER_BEAT_SECONDS
        expect(row).to_have_attribute("data-gone", "true", timeout=(3 * beats + 10) * 1000)
        expect(row.locator('[data-field="gone"]')).to_be_visible()
    finally:
        worker.stop()
        cache.delete(fleet.state_key(NAME))
    page.context.close()
