"""Content Credentials: Bob's images carry a signed C2PA manifest that c2pa-python reads back as valid and
trusted against the studio's root; an inpainted child names its parent; Alice's export carries her approval;
anyone signed in can verify a file, and learns which image it is only when they can see its project."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from pathlib import Path

import c2pa
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from PIL import Image

from gallery import credentials, pngmeta, services
from gallery.models import Asset, Credentials
from generation.models import Job
from studio.models import AuditEvent
from tests.unit.test_exports import PARAMS, make_job_assets, read_zip, stored_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def own_pki(settings, tmp_path):
    """Each test signs with a studio root of its own, made on first use."""
    settings.STUDIO_C2PA_DIR = str(tmp_path / "credentials")
    settings.STUDIO_C2PA = True
    settings.STUDIO_C2PA_INCLUDE_PROMPT = False


def root_pem(client, user) -> str:
    client.force_login(user)
    response = client.get("/api/v1/credentials/root.pem")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-pem-file"
    return response.content.decode()


def read_back(data: bytes, anchors: str | None) -> tuple[str, dict]:
    """What c2pa-python itself says, trusting only ``anchors`` (no fetching)."""
    config: dict = {"verify": {"verify_trust": True, "ocsp_fetch": False, "remote_manifest_fetch": False}}
    if anchors:
        config["trust"] = {"trust_anchors": anchors}
    with (
        c2pa.Context.from_dict(config) as context,
        c2pa.Reader("image/png", io.BytesIO(data), context=context) as r,
    ):
        return r.get_validation_state(), json.loads(r.json())


def active(store: dict) -> dict:
    return store["manifests"][store["active_manifest"]]


def assertion(manifest: dict, label: str) -> dict:
    return next(a["data"] for a in manifest["assertions"] if a["label"].startswith(label))


def inpaint_child(parent: Asset, author) -> Asset:
    mask = io.BytesIO()
    Image.new("L", (parent.width, parent.height), 255).save(mask, format="PNG")
    mask_name = default_storage.save(f"masks/{parent.project_id}/m.png", ContentFile(mask.getvalue()))
    job = Job.objects.create(
        project=parent.project,
        created_by=author,
        model_id="demo",
        queue="gpu",
        params=dict(
            PARAMS,
            width=parent.width,
            height=parent.height,
            mode="inpaint",
            init_asset=str(parent.id),
            mask=mask_name,
        ),
        progress_total=20,
    )
    [child] = services.do_create_job_assets(
        job,
        [Image.new("RGB", (parent.width, parent.height), (10, 200, 10))],
        [7],
        model_name="Demo",
        model_sha256="ab" * 32,
    )
    return child


def test_a_generated_image_is_signed_valid_and_trusted_against_the_studio_root(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    png = stored_bytes(asset.file.name)
    assert asset.credentials == Credentials.SIGNED and asset.manifest_label
    anchors = root_pem(client, team["vera"])
    state, store = read_back(png, anchors)
    assert state == "Trusted"
    manifest = active(store)
    assert store["active_manifest"] == asset.manifest_label
    assert manifest["claim_generator_info"][0]["name"] == "Studio"
    [created] = assertion(manifest, "c2pa.actions")["actions"]
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    generation = assertion(manifest, "org.studio.generation")
    assert generation["model"] == {"id": "demo", "name": "Demo", "sha256": "ab" * 32}
    assert generation["project"] == {"slug": "poster", "name": "Poster"}
    assert generation["author"] == "bob"
    assert generation["parameters"]["seed"] == asset.seed and generation["parameters"]["steps"] == 20
    assert "prompt" not in generation["parameters"] and "a red circle" not in json.dumps(store)
    # Without the studio's root it is intact but not trusted: the trust comes from the root alone.
    assert read_back(png, None)[0] == "Valid"
    # The text chunks other tools read are still there.
    text = pngmeta.read_provenance(png)
    assert text["parameters"].startswith("a red circle") and text["studio"]["created_by"] == "bob"
    assert asset.sha256 and asset.sha256 == hashlib.sha256(png).hexdigest()
    shown = client.get(f"/api/v1/assets/{asset.id}").json()
    assert (shown["credentials"], shown["sha256"]) == ("signed", asset.sha256)


def test_the_prompt_goes_in_only_when_the_site_says_so(settings, team):
    settings.STUDIO_C2PA_INCLUDE_PROMPT = True
    [asset] = make_job_assets(team["project"], team["bob"])
    _, store = read_back(stored_bytes(asset.file.name), None)
    assert assertion(active(store), "org.studio.generation")["parameters"]["prompt"] == "a red circle"


def test_an_inpainted_child_lists_its_parent_as_an_ingredient(client, team):
    [parent] = make_job_assets(team["project"], team["bob"])
    child = inpaint_child(parent, team["bob"])
    state, store = read_back(stored_bytes(child.file.name), root_pem(client, team["bob"]))
    assert state == "Trusted"
    manifest = active(store)
    assert [a["action"] for a in assertion(manifest, "c2pa.actions")["actions"]] == [
        "c2pa.opened",
        "c2pa.edited",
    ]
    assert assertion(manifest, "c2pa.actions")["actions"][1]["digitalSourceType"].endswith(
        "/compositeWithTrainedAlgorithmicMedia"
    )
    [ingredient] = manifest["ingredients"]
    assert ingredient["relationship"] == "parentOf"
    assert ingredient["active_manifest"] == parent.manifest_label  # the parent's own, signed manifest
    assert store["manifests"][parent.manifest_label]["title"] == f"{parent.id}.png"


def test_an_export_carries_the_approval_over_the_creation_manifest(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    services.do_submit(team["bob"], asset)
    _, review = services.do_review(team["alice"], asset, "approve", "lovely")
    client.force_login(team["alice"])
    archive = read_zip(client.get("/api/v1/projects/poster/export?status=approved"))
    [name] = [n for n in archive.namelist() if n.endswith(".png")]
    exported = archive.read(name)
    state, store = read_back(exported, root_pem(client, team["alice"]))
    assert state == "Trusted"
    manifest = active(store)
    assert [a["action"] for a in assertion(manifest, "c2pa.actions")["actions"]] == [
        "c2pa.opened",
        "c2pa.published",
    ]
    approval = assertion(manifest, "org.studio.review")
    assert approval["status"] == "approved"
    assert approval["approved_by"] == "alice" and approval["approved_at"] == review.at.isoformat()
    assert approval["exported_by"] == "alice"
    client.force_login(team["vera"])
    summary = verify(client, exported).json()["chain"][0]["review_summary"]
    assert summary.startswith(f"Approved by alice on {review.at:%Y-%m-%d %H:%M} UTC; exported by alice")
    assert "lovely" not in json.dumps(store)  # review comments are the team's own
    [ingredient] = manifest["ingredients"]
    assert ingredient["active_manifest"] == asset.manifest_label
    # The sidecar describes the file in the zip.
    meta = json.loads(archive.read(name.replace(".png", ".json")))
    assert meta["file"]["sha256"] == hashlib.sha256(exported).hexdigest()


def verify(client, data: bytes, name: str = "x.png"):
    return client.post("/api/v1/verify", {"image": ContentFile(data, name=name)})


def tampered(png: bytes) -> bytes:
    """One pixel changed in the image data, the manifest left as it was."""
    data = bytearray(png)
    at = data.index(b"IDAT") + 20
    data[at] ^= 0x01
    return bytes(data)


def stripped(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        out = io.BytesIO()
        image.save(out, format="PNG")
    return out.getvalue()


def test_verify_reports_a_signed_image_its_maker_and_the_visible_asset_it_is(client, team):
    [parent] = make_job_assets(team["project"], team["bob"])
    child = inpaint_child(parent, team["bob"])
    client.force_login(team["vera"])
    answer = verify(client, stored_bytes(child.file.name)).json()
    assert answer["credentials"] and answer["valid"] and answer["trusted"] and answer["state"] == "trusted"
    assert answer["problems"] == []
    assert answer["match"]["id"] == str(child.id)
    assert answer["made_by"]["author"] == "bob" and answer["made_by"]["model"]["sha256"] == "ab" * 32
    assert [step["actions"] for step in answer["chain"]] == [["c2pa.opened", "c2pa.edited"], ["c2pa.created"]]
    assert [step["asset"]["id"] for step in answer["chain"]] == [str(child.id), str(parent.id)]

    # Charlie sees the same credentials, but not that they are images of a project he is not in.
    client.force_login(team["charlie"])
    answer = verify(client, stored_bytes(child.file.name)).json()
    assert answer["trusted"] and answer["match"] is None
    assert all(step["asset"] is None for step in answer["chain"])


def test_verify_finds_the_asset_an_export_was_made_from(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    client.force_login(team["alice"])
    archive = read_zip(client.get("/api/v1/projects/poster/export?status=all"))
    exported = archive.read(next(n for n in archive.namelist() if n.endswith(".png")))
    answer = verify(client, exported).json()
    assert answer["trusted"] and answer["match"] is None  # a new file, made from the asset
    assert answer["made_from"]["id"] == str(asset.id)
    assert answer["chain"][0]["review"]["status"] == "draft"
    assert answer["chain"][0]["review_summary"].startswith("Not approved (status: draft); exported by alice")
    assert answer["chain"][1]["asset"]["id"] == str(asset.id)


def test_a_tampered_pixel_and_a_stripped_manifest_are_reported_by_the_api_and_the_page(client, team):
    [asset] = make_job_assets(team["project"], team["bob"])
    png = stored_bytes(asset.file.name)
    client.force_login(team["vera"])
    answer = verify(client, tampered(png)).json()
    assert answer["credentials"] and not answer["valid"] and answer["state"] == "invalid"
    assert any(p.startswith("assertion.dataHash.mismatch") for p in answer["problems"])
    assert answer["match"] is None and all(step["asset"] is None for step in answer["chain"])
    answer = verify(client, stripped(png)).json()
    assert answer["credentials"] is False and answer["state"] == "none" and answer["chain"] == []

    page = client.post("/verify/", {"image": ContentFile(tampered(png), name="t.png")}).content.decode()
    assert 'data-state="invalid"' in page and "assertion.dataHash.mismatch" in page
    page = client.post("/verify/", {"image": ContentFile(stripped(png), name="s.png")}).content.decode()
    assert 'data-state="none"' in page and "No Content Credentials" in page
    page = client.post("/verify/", {"image": ContentFile(png, name="ok.png")}).content.decode()
    assert 'data-state="trusted"' in page and "Valid and trusted" in page and f"/assets/{asset.id}/" in page


def test_verify_refuses_what_is_not_an_image_with_a_clear_400(client, team):
    client.force_login(team["vera"])
    response = verify(client, b"not an image at all")
    assert response.status_code == 400
    assert response.json()["errors"]["image"] == [response.json()["error"]]
    assert client.post("/api/v1/verify", {}).status_code == 400
    page = client.post("/verify/", {"image": ContentFile(b"nope", name="n.png")})
    assert page.status_code == 400 and 'id="verify-error"' in page.content.decode()
    client.logout()
    assert client.post("/api/v1/verify", {}).status_code == 401
    assert client.get("/api/v1/credentials/root.pem").status_code == 401
    assert client.get("/verify/").status_code == 302


def test_the_studio_makes_its_own_keys_readable_by_its_user_only(settings, team):
    make_job_assets(team["project"], team["bob"])
    folder = Path(settings.STUDIO_C2PA_DIR)
    for key in ("root.key", "signing.key"):
        assert stat.S_IMODE(os.stat(folder / key).st_mode) == 0o600
    assert b"PRIVATE KEY" not in credentials.published_roots_pem()


def test_a_signing_failure_keeps_the_image_unsigned_and_tells_the_admin(client, team, monkeypatch):
    def broken():
        raise credentials.SigningUnavailable("The signing certificate or key cannot be read: gone")

    monkeypatch.setattr(credentials, "_signer", broken)
    [asset] = make_job_assets(team["project"], team["bob"])
    assert asset.credentials == Credentials.UNSIGNED and "gone" in asset.credentials_error
    assert Image.open(io.BytesIO(stored_bytes(asset.file.name))).size == (320, 200)
    event = AuditEvent.objects.get(action="asset.sign_failed")
    assert event.target == f"asset:{asset.id}" and "gone" in event.details["cause"]
    client.force_login(team["root"])
    assert "gone" in client.get(f"/assets/{asset.id}/").content.decode()
    assert 'id="privacy-unsigned"' in client.get("/help/privacy/").content.decode()
    client.force_login(team["bob"])
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert "signing failed" in page and "gone" not in page


def test_rotation_keeps_earlier_images_trusted(client, team, settings):
    [before] = make_job_assets(team["project"], team["bob"])
    old_root = credentials.root_certificate_pem()
    call_command("studio_rotate_signing", stdout=io.StringIO())
    call_command("studio_rotate_signing", "--new-root", stdout=io.StringIO())
    assert credentials.root_certificate_pem() != old_root
    [after] = make_job_assets(team["project"], team["bob"])
    anchors = root_pem(client, team["vera"])
    assert old_root.decode() in anchors
    for asset in (before, after):
        assert read_back(stored_bytes(asset.file.name), anchors)[0] == "Trusted"
    client.force_login(team["vera"])
    assert verify(client, stored_bytes(before.file.name)).json()["trusted"]


# A signing hook as an HSM or a KMS would offer: it holds the key, the studio hands it bytes to sign.
_HOOK_KEY: list = []


def hsm_sign(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    return _HOOK_KEY[0].sign(data, ec.ECDSA(hashes.SHA256()))


def test_an_operator_pki_with_a_signing_hook(client, team, settings, tmp_path):
    from cryptography.hazmat.primitives import serialization

    root, root_key = credentials._make_root()
    chain, key = credentials._make_signing(root, root_key)
    (tmp_path / "chain.pem").write_bytes(chain)
    (tmp_path / "root.pem").write_bytes(root)
    _HOOK_KEY[:] = [serialization.load_pem_private_key(key, None)]
    settings.STUDIO_C2PA_CERT_CHAIN = str(tmp_path / "chain.pem")
    settings.STUDIO_C2PA_ROOT = str(tmp_path / "root.pem")
    settings.STUDIO_C2PA_SIGNER = "tests.unit.test_credentials:hsm_sign"
    [asset] = make_job_assets(team["project"], team["bob"])
    assert asset.credentials == Credentials.SIGNED
    assert root_pem(client, team["vera"]) == root.decode()
    assert read_back(stored_bytes(asset.file.name), root.decode())[0] == "Trusted"
    assert not Path(settings.STUDIO_C2PA_DIR).exists()  # no keys of its own were made
    with pytest.raises(Exception, match="your own PKI"):
        call_command("studio_rotate_signing", stdout=io.StringIO())
