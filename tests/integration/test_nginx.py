"""The shipped nginx config in front of a real daphne and worker, as a studio's IT would run it: TLS from
the studio's CA, sign-in, a job watched over wss://, private images through X-Accel-Redirect, the body
limit, and static files served by nginx itself."""

from __future__ import annotations

import hashlib
import json
import re
import time
import urllib.parse

import pytest
import requests
from websockets.sync.client import connect

from gallery.models import Asset
from tests import factories
from tests.integration.conftest import METRICS_TOKEN
from tests.integration.proxy import client_context
from tests.integration.stack import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct horse battery"


def signed_in(proxied, username: str) -> requests.Session:
    """A browser-like session: the sign-in form over HTTPS, CSRF cookie and all."""
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE in the environment would override the test CA
    session.verify = str(proxied["ca"])
    login = proxied["origin"] + "/accounts/login/"
    page = session.get(login, timeout=10)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    answer = session.post(
        login,
        data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": login, "Origin": proxied["origin"]},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 302, answer.text[:500]
    session.headers.update({"X-CSRFToken": str(session.cookies["csrftoken"]), "Origin": proxied["origin"]})
    return session


def test_a_member_signs_in_generates_watches_over_wss_and_gets_the_image_through_nginx(proxied):
    alice = factories.user("alice")
    factories.project(alice, "Key art")
    session = signed_in(proxied, "alice")
    assert "Key art" in session.get(proxied["origin"] + "/", timeout=10).text

    created = session.post(
        proxied["origin"] + "/api/v1/projects/key-art/jobs",
        json={"prompt": "a red circle on a blue background", "steps": 12, "width": 64, "height": 64},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    job = created.json()

    cookies = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
    messages = []
    with connect(
        f"wss://127.0.0.1:{proxied['nginx'].https_port}/ws/jobs/{job['id']}/",
        ssl=client_context(proxied["ca"]),
        additional_headers={"Cookie": cookies, "Origin": proxied["origin"]},
        open_timeout=10,
    ) as ws:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            message = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            messages.append(message)
            if message["type"] in ("succeeded", "failed", "canceled"):
                break
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "succeeded", messages[-1]
    assert "preview" in kinds, kinds

    [asset] = messages[-1]["assets"]
    stored = Asset.objects.get(id=asset["id"])
    with stored.file.open("rb") as f:
        expected = hashlib.sha256(f.read()).hexdigest()
    for url in (asset["image_url"], f"/assets/{asset['id']}/image.png"):
        image = session.get(proxied["origin"] + url, timeout=10)
        assert image.status_code == 200
        assert image.headers["Content-Type"] == "image/png"
        assert hashlib.sha256(image.content).hexdigest() == expected
        assert image.headers["Cache-Control"] == "private, max-age=3600"
        assert image.headers["X-Content-Type-Options"] == "nosniff"
        assert "X-Accel-Redirect" not in image.headers
        # nginx's own file serving answers with a validator; daphne's stream has none.
        assert image.headers.get("ETag")

    # Daphne itself sends no bytes, only the internal location for nginx.
    direct = requests.get(
        f"http://127.0.0.1:{proxied['web_port']}/assets/{asset['id']}/image.png",
        cookies=session.cookies.get_dict(),
        timeout=10,
    )
    assert direct.status_code == 200 and direct.content == b""
    assert direct.headers["X-Accel-Redirect"] == "/_media/files/" + urllib.parse.quote(stored.file.name)


def test_outsiders_and_direct_requests_for_the_internal_location_get_404(proxied):
    alice = factories.user("alice")
    factories.user("charlie")
    project = factories.project(alice)
    asset = factories.asset(project, alice)
    outsider = signed_in(proxied, "charlie")
    assert outsider.get(f"{proxied['origin']}/assets/{asset.id}/image.png", timeout=10).status_code == 404
    assert (
        outsider.get(f"{proxied['origin']}/api/v1/assets/{asset.id}/thumbnail", timeout=10).status_code == 404
    )
    member = signed_in(proxied, "alice")
    internal = f"{proxied['origin']}/_media/files/{asset.file.name}"
    assert member.get(internal, timeout=10).status_code == 404
    assert member.get(f"{proxied['origin']}/assets/{asset.id}/image.png", timeout=10).status_code == 200
    # Flower is for site admins only: the proxy asks the studio first. (Nothing runs behind it here, so
    # the admin, let through, meets a 502.)
    assert member.get(f"{proxied['origin']}/flower/", timeout=10).status_code == 404
    factories.user("root", admin=True)
    assert signed_in(proxied, "root").get(f"{proxied['origin']}/flower/", timeout=10).status_code == 502


def test_nginx_refuses_a_body_over_the_limit_and_serves_static_files_itself(proxied):
    alice = factories.user("alice")
    factories.project(alice, "Uploads")
    session = signed_in(proxied, "alice")
    too_big = session.post(
        proxied["origin"] + "/api/v1/projects/uploads/uploads",
        files={"image": ("big.png", b"\0" * (22 * 1024 * 1024), "image/png")},
        timeout=30,
    )
    assert too_big.status_code == 413

    css = requests.get(proxied["origin"] + "/static/studio/studio.css", verify=str(proxied["ca"]), timeout=10)
    assert css.status_code == 200
    assert css.content == (ROOT / "static" / "studio" / "studio.css").read_bytes()
    assert css.headers["Cache-Control"] == "max-age=604800, public" and css.headers.get("ETag")
    # The web process behind it does not serve them (STUDIO_SERVE_STATIC=false): nginx did.
    assert (
        requests.get(
            f"http://127.0.0.1:{proxied['web_port']}/static/studio/studio.css", timeout=10
        ).status_code
        == 404
    )
    # And plain HTTP goes to HTTPS.
    plain = requests.get(f"http://127.0.0.1:{proxied['nginx'].http_port}/", allow_redirects=False, timeout=10)
    assert plain.status_code == 301 and plain.headers["Location"].startswith("https://")


def scrape(proxied, token: str | None = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(
        proxied["origin"] + "/metrics", headers=headers, verify=str(proxied["ca"]), timeout=10
    )


def sample(text: str, name: str, **labels: str) -> float:
    """One sample's value from the Prometheus text (0 when the series is absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = re.escape(name) + (r"\{" + re.escape(wanted) + r"\}" if labels else "") + r" ([0-9.e+-]+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_move_after_a_job_and_refuse_everyone_without_the_token(proxied):
    # Through the proxy (X-Forwarded-For) nothing but the token opens /metrics.
    assert scrape(proxied).status_code == 404
    assert scrape(proxied, "stu_not-the-metrics-token").status_code == 404
    alice = factories.user("alice")
    assert scrape(proxied, factories.token(alice)).status_code == 404, "a user's API token is not enough"
    before = scrape(proxied, METRICS_TOKEN)
    assert before.status_code == 200 and before.headers["Content-Type"].startswith("text/plain")

    factories.project(alice, "Metrics")
    session = signed_in(proxied, "alice")
    job = session.post(
        proxied["origin"] + "/api/v1/projects/metrics/jobs",
        json={"prompt": "a blue square", "steps": 4, "width": 64, "height": 64, "num_images": 2},
        timeout=10,
    ).json()
    with connect(
        f"wss://127.0.0.1:{proxied['nginx'].https_port}/ws/jobs/{job['id']}/",
        ssl=client_context(proxied["ca"]),
        additional_headers={"Authorization": f"Bearer {factories.token(alice)}"},
    ) as ws:
        watching = scrape(proxied, METRICS_TOKEN).text
        assert sample(watching, "studio_websocket_connections", stream="job") >= 1
        while json.loads(ws.recv(timeout=90))["type"] not in ("succeeded", "failed", "canceled"):
            pass
    after = scrape(proxied, METRICS_TOKEN).text
    old = before.text
    assert (
        sample(after, "studio_jobs", state="succeeded") == sample(old, "studio_jobs", state="succeeded") + 1
    )
    assert sample(after, "studio_project_images_total", project="metrics") == 2
    assert sample(after, "studio_project_gpu_seconds_total", project="metrics") > 0
    for histogram in ("studio_job_duration_seconds_count", "studio_job_queue_wait_seconds_count"):
        assert sample(after, histogram) == sample(old, histogram) + 1, histogram
    assert (
        sample(after, "studio_http_requests_total", method="POST", route="api-project-jobs", status="2xx")
        >= 1
    )
    assert re.search(r'^studio_worker_model_loaded\{model="demo",worker="[^"]+"\} 1', after, re.M), after
    assert re.search(r"^studio_worker_memory_bytes\{worker=.*\} [1-9]", after, re.M)
    assert "studio_queue_length" in after
