"""Project styles: Alice (lead) defines "Ink"; Bob (artist) generates with it; the image says which style and
version made it, also after Alice edits the style; a locked field cannot be changed; Vera (viewer) and Bob
read styles but may not change them; Charlie sees none of it; a style is copied only by a lead of both."""

from __future__ import annotations

import html
import json

import pytest

from gallery.models import Asset
from gallery.provenance import generation_manifest
from generation import services, styles
from generation.models import Style
from generation.schemas import LoraRef
from generation.tasks import run_job
from studio.models import AuditEvent, Role
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


def api(client, method, path, body=None):
    send = getattr(client, method)
    if body is None:
        return send(path)
    return send(path, data=json.dumps(body), content_type="application/json")


def ink(client, **fields):
    body = {"name": "Ink", "prompt_prefix": "ink drawing", "prompt_suffix": "high contrast",
            "negative_prompt": "colour", **fields}  # fmt: skip
    response = api(client, "post", "/api/v1/projects/poster/styles", body)
    assert response.status_code == 201, response.json()
    return response.json()


def test_an_artists_job_uses_the_style_and_its_image_names_the_version(client, team, demo_model_dir):
    client.force_login(team["alice"])
    style = ink(client, model="demo", locks=["model"])
    assert style["version"] == 1 and style["locks"] == ["model"]
    assert AuditEvent.objects.filter(action="style.create", target=f"style:{style['id']}").exists()

    client.force_login(team["bob"])
    body = {"prompt": "a red circle", "negative_prompt": "blur", "style": style["id"], "steps": 2, "seed": 3}
    response = api(client, "post", "/api/v1/projects/poster/jobs", body)
    assert response.status_code == 201, response.json()
    job = response.json()
    assert job["params"]["prompt"] == "ink drawing, a red circle, high contrast"
    assert job["params"]["negative_prompt"] == "colour, blur"
    assert job["params"]["model"] == "demo"
    assert job["params"]["style"] == {"id": style["id"], "name": "Ink", "version": 1}
    assert run_job(job["id"]) == "succeeded"
    first = Asset.objects.get(job_id=job["id"])
    assert first.params["style"] == {"id": style["id"], "name": "Ink", "version": 1}
    manifest = generation_manifest(first, project_slug="poster", project_name="Poster", author="bob",
                                   with_parent=False)  # fmt: skip
    generation = next(a["data"] for a in manifest["assertions"] if a["label"] == "org.studio.generation")
    assert generation["style"] == {"id": style["id"], "name": "Ink", "version": 1}
    assert "Ink (version 1)" in client.get(f"/assets/{first.id}/").content.decode()

    # Alice edits the style: version 2; the first image still says version 1.
    client.force_login(team["alice"])
    edited = api(client, "patch", f"/api/v1/styles/{style['id']}", {"prompt_prefix": "charcoal sketch"})
    assert edited.status_code == 200, edited.json()
    assert edited.json()["version"] == 2
    assert api(client, "get", f"/api/v1/styles/{style['id']}").json()["prompt_prefix"] == "charcoal sketch"
    client.force_login(team["bob"])
    second = api(client, "post", "/api/v1/projects/poster/jobs", {**body, "negative_prompt": ""}).json()
    assert second["params"]["prompt"] == "charcoal sketch, a red circle, high contrast"
    assert second["params"]["negative_prompt"] == "colour"
    assert second["params"]["style"]["version"] == 2
    first.refresh_from_db()
    assert first.params["style"]["version"] == 1


def test_a_locked_field_cannot_be_changed(client, team, demo_model_dir):
    client.force_login(team["alice"])
    style = ink(client, model="demo", locks=["model", "prompt_prefix", "negative_prompt"])
    client.force_login(team["bob"])
    base = {"prompt": "a cat", "style": style["id"]}

    response = api(client, "post", "/api/v1/projects/poster/jobs", {**base, "model": "other-model"})
    assert response.status_code == 400
    assert (
        response.json()["error"] == "The style 'Ink' locks the model; leave it out or choose another style."
    )
    assert list(response.json()["errors"]) == ["model"]
    response = api(client, "post", "/api/v1/projects/poster/jobs", {**base, "prompt_prefix": "oil paint"})
    assert response.status_code == 400
    assert "locks the prompt prefix" in response.json()["error"]
    response = api(client, "post", "/api/v1/projects/poster/jobs", {**base, "negative_prompt": "dogs"})
    assert response.status_code == 400
    assert "locks the negative prompt" in response.json()["error"]
    # Sending the style's own value, or leaving it out, is no change.
    response = api(client, "post", "/api/v1/projects/poster/jobs", {**base, "model": "demo"})
    assert response.status_code == 201, response.json()
    # An unlocked suffix may be replaced.
    job = api(client, "post", "/api/v1/projects/poster/jobs", {**base, "prompt_suffix": "soft"}).json()
    assert job["params"]["prompt"] == "ink drawing, a cat, soft"


def test_the_generate_form_offers_the_projects_styles_with_their_locks(client, team, demo_model_dir):
    client.force_login(team["alice"])
    style = ink(client, model="demo", locks=["model"])
    other = factories.project(team["alice"], name="Other")
    Style.objects.create(project=other, name="Elsewhere", created_by=team["alice"])
    client.force_login(team["bob"])
    page = client.get("/p/poster/").content.decode()
    assert 'id="f-style"' in page and "generation/styles.js" in page
    assert "<script>" not in page  # no inline script (CSP): the data rides on a data attribute
    data = page.split('id="styles-data" data-json="')[1].split('"></div>')[0]
    offered = json.loads(html.unescape(data))
    assert [(s["id"], s["locks"]) for s in offered] == [(style["id"], ["model"])]


def test_job_loras_come_from_the_style_unless_the_job_names_its_own(team, monkeypatch, demo_model_dir):
    # The LoRA check itself is library.check_loras' (tests/unit/test_library.py); here: which LoRAs reach it.
    seen = []

    def check_loras(chosen, model, errors):
        seen.append([(c.id, c.weight) for c in chosen])
        return [{"id": c.id, "weight": c.weight, "sha256": ""} for c in chosen]

    monkeypatch.setattr(services.library, "check_loras", check_loras)
    monkeypatch.setattr(styles.registry, "get_lora", lambda lora_id: object())  # "installed"
    payload = styles.StyleIn(name="Ink", loras=[LoraRef(id="ink", weight=0.7)], locks=["loras"])
    style = styles.do_create_style(team["alice"], team["project"], payload)
    plan = services.check_job_body(
        {"prompt": "a cat", "style": style.id}, user=team["bob"], project=team["project"]
    )
    assert seen[-1] == [("ink", 0.7)]
    assert [(lo.id, lo.weight) for lo in plan.params.loras] == [("ink", 0.7)]
    with pytest.raises(services.InvalidInput, match="locks the LoRAs"):
        services.check_job_body(
            {"prompt": "a cat", "style": style.id, "loras": [{"id": "ink", "weight": 1}]},
            user=team["bob"],
            project=team["project"],
        )
    styles.do_edit_style(team["alice"], style, styles.StylePatch(locks=[]))
    plan = services.check_job_body(
        {"prompt": "a cat", "style": style.id, "loras": [{"id": "ink", "weight": 1}]},
        user=team["bob"],
        project=team["project"],
    )
    assert [(lo.id, lo.weight) for lo in plan.params.loras] == [("ink", 1.0)]


def test_only_leads_change_styles_and_outsiders_see_none(client, team, demo_model_dir):
    client.force_login(team["alice"])
    style = ink(client)
    for who in ("bob", "vera"):
        client.force_login(team[who])
        assert api(client, "get", "/api/v1/projects/poster/styles").json()[0]["name"] == "Ink"
        assert api(client, "post", "/api/v1/projects/poster/styles", {"name": "Mine"}).status_code == 403
        assert api(client, "patch", f"/api/v1/styles/{style['id']}", {"name": "X"}).status_code == 403
        assert api(client, "delete", f"/api/v1/styles/{style['id']}").status_code == 403
    client.force_login(team["charlie"])
    assert api(client, "get", "/api/v1/projects/poster/styles").status_code == 404
    assert api(client, "get", f"/api/v1/styles/{style['id']}").status_code == 404
    job = api(client, "post", "/api/v1/projects/poster/jobs", {"prompt": "x", "style": style["id"]})
    assert job.status_code == 404

    client.force_login(team["alice"])
    taken = api(client, "post", "/api/v1/projects/poster/styles", {"name": "ink"})
    assert (taken.status_code, taken.json()["error"]) == (409, styles.NAME_TAKEN)
    bad = api(client, "post", "/api/v1/projects/poster/styles", {"name": "R", "references": ["nope"]})
    assert bad.status_code == 400 and "references" in bad.json()["errors"]
    assert api(client, "delete", f"/api/v1/styles/{style['id']}").status_code == 204
    assert api(client, "get", "/api/v1/projects/poster/styles").json() == []
    assert ink(client)["id"] != style["id"]  # the name is free again


def test_a_style_is_copied_by_a_lead_of_both_projects(client, team, demo_model_dir):
    client.force_login(team["alice"])
    style = ink(client, model="demo", locks=["model"])
    mural = factories.project(team["alice"], name="Mural")  # Alice leads both
    zine = factories.project(team["charlie"], name="Zine")  # Alice is only an artist here
    factories.member(zine, team["alice"], Role.ARTIST)
    factories.project(team["charlie"], name="Secret")  # Alice is not in it

    copied = api(client, "post", f"/api/v1/styles/{style['id']}/copy", {"project": "mural"})
    assert copied.status_code == 201, copied.json()
    assert copied.json()["project"] == "mural" and copied.json()["version"] == 1
    assert copied.json()["locks"] == ["model"] and copied.json()["prompt_prefix"] == "ink drawing"
    assert Style.objects.filter(project=mural, name="Ink").exists()
    assert AuditEvent.objects.filter(action="style.copy").exists()
    assert api(client, "post", f"/api/v1/styles/{style['id']}/copy", {"project": "zine"}).status_code == 403
    assert api(client, "post", f"/api/v1/styles/{style['id']}/copy", {"project": "secret"}).status_code == 404
    again = api(client, "post", f"/api/v1/styles/{style['id']}/copy", {"project": "mural"})
    assert again.status_code == 409  # Mural has an Ink now
    client.force_login(team["bob"])  # an artist of the source project
    assert api(client, "post", f"/api/v1/styles/{style['id']}/copy", {"project": "mural"}).status_code == 403


def test_the_styles_page_creates_edits_and_deletes_for_leads(client, team, demo_model_dir):
    client.force_login(team["alice"])
    response = client.post("/p/poster/styles/", {"name": "Ink", "prompt_prefix": "ink", "model": "demo",
                                                  "lock_model": "1"})  # fmt: skip
    assert response.status_code == 302
    style = Style.objects.get(name="Ink")
    assert style.current().locks == ["model"]
    assert "Ink" in client.get("/p/poster/settings/").content.decode()
    assert (
        client.post(f"/styles/{style.id}/", {"name": "Ink", "prompt_prefix": "charcoal"}).status_code == 302
    )
    assert style.current().number == 2 and style.current().locks == []
    client.force_login(team["bob"])
    assert client.post(f"/styles/{style.id}/delete/").status_code == 403
    assert 'id="style-save"' not in client.get(f"/styles/{style.id}/").content.decode()
    client.force_login(team["alice"])
    assert client.post(f"/styles/{style.id}/delete/").status_code == 302
    assert Style.objects.get(pk=style.pk).deleted
