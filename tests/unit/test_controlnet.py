"""ControlNet: an admin installs a ControlNet folder like a LoRA; an artist's job names it with a control
image of the project and a preprocessor; the worker makes the control map, the ControlNet steers the image,
and the asset keeps the map (served under the asset's own permissions) and names the unit in its
provenance."""

from __future__ import annotations

import base64
import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from django.core.files.base import ContentFile
from PIL import Image, ImageDraw

from gallery.models import Asset, ControlMap
from gallery.pngmeta import read_provenance
from gallery.services import do_upload_image
from generation import library, services
from generation.engine import control, registry
from generation.schemas import JobParams
from generation.tasks import run_job
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests import factories, library_models

pytestmark = pytest.mark.django_db(transaction=True)

DEMO_SIZE = 64
SDXL_SIZE = library_models.FAMILY_SIZES["sdxl"]


# --- the models and ControlNets --


@pytest.fixture
def demo(team, models_dir, demo_model_dir) -> str:
    """The bundled demo model, installed in the test's own models dir."""
    return library.do_install_model(team["root"], str(demo_model_dir), name="demo").id


@pytest.fixture
def demo_controlnet(team, demo, demo_model_dir, tmp_path) -> library.Installed:
    source = library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "demo-canny")
    return library.do_install_controlnet(team["root"], str(source), name="Demo canny", family="demo")


@pytest.fixture
def sdxl(team, models_dir, tmp_path) -> tuple[str, Path]:
    source = library_models.build_folder("sdxl", tmp_path / "incoming" / "tiny-sdxl")
    return library.do_install_model(team["root"], str(source), name="Tiny SDXL").id, source


def png_file(image: Image.Image, name: str = "control.png") -> ContentFile:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return ContentFile(buffer.getvalue(), name=name)


def square(size: int, inner: int) -> Image.Image:
    """A white square of side ``inner`` centred on black."""
    image = Image.new("RGB", (size, size), (0, 0, 0))
    start = (size - inner) // 2
    ImageDraw.Draw(image).rectangle(
        [start, start, start + inner - 1, start + inner - 1], fill=(255, 255, 255)
    )
    return image


def sketch(size: int) -> Image.Image:
    """Dark pencil lines on white paper."""
    image = Image.new("RGB", (size, size), (250, 250, 245))
    draw = ImageDraw.Draw(image)
    draw.line([(4, size // 2), (size - 5, size // 2)], fill=(20, 20, 20), width=3)
    draw.ellipse([size // 4, size // 4, 3 * size // 4, 3 * size // 4], outline=(40, 40, 40), width=2)
    return image


def upload(team, image: Image.Image) -> Asset:
    return do_upload_image(team["bob"], team["project"], png_file(image))


def run(team, body: dict) -> tuple[object, list[Asset]]:
    job = services.do_create_job(team["bob"], team["project"], body)
    assert run_job(str(job.id)) == "succeeded", job.id
    job.refresh_from_db()
    return job, list(Asset.objects.filter(job=job).order_by("index"))


def pixels(asset: Asset) -> np.ndarray:
    with asset.file.open("rb") as f:
        return np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"), dtype=np.float32)


# --- preprocessors --


def test_canny_of_a_white_square_draws_its_outline():
    made = control.preprocess("canny", square(64, 32), 64, 64)
    edges = np.asarray(made.convert("L")) > 127
    assert made.size == (64, 64)
    ys, xs = np.nonzero(edges)
    # Every edge pixel lies on the square's outline (within a pixel of its sides), and all four sides have
    # edges along their length; nothing inside or outside.
    assert ys.size > 0
    outline = (
        (np.abs(ys - 16) <= 1) | (np.abs(ys - 47) <= 1) | (np.abs(xs - 16) <= 1) | (np.abs(xs - 47) <= 1)
    )
    assert outline.all()
    for side in (edges[15:18, 20:44], edges[46:49, 20:44], edges[20:44, 15:18], edges[20:44, 46:49]):
        assert side.any(axis=0 if side.shape[0] == 3 else 1).all()
    assert not edges[24:40, 24:40].any() and not edges[:8].any()


def test_lineart_turns_dark_lines_on_white_into_white_on_black():
    drawn = sketch(64)
    made = np.asarray(control.preprocess("lineart", drawn, 64, 64).convert("L"))
    dark = np.asarray(drawn.convert("L")) < 128
    assert set(np.unique(made)) == {0, 255}
    assert (made[dark] == 255).all() and (made[~dark] == 0).all()
    assert (made == 0).mean() > 0.8  # the paper is black now


def test_scribble_and_none_keep_the_image_fitted_to_the_size():
    wide = Image.new("RGB", (128, 64), (0, 0, 0))
    ImageDraw.Draw(wide).rectangle([48, 16, 79, 47], fill=(255, 255, 255))  # a square in the middle
    for name in ("scribble", "none"):
        made = control.preprocess(name, wide, 64, 64)
        assert made.size == (64, 64) and made.mode == "RGB"
        grey = np.asarray(made.convert("L"))
        # Cropped around the centre, not squashed: the square stays square.
        ys, xs = np.nonzero(grey > 127)
        assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1


def test_every_preprocessor_the_api_names_is_one_the_worker_has():
    from generation.schemas import Preprocessor

    assert set(Preprocessor.__args__) == set(control.PREPROCESSORS) | set(registry.ANNOTATOR_KINDS)
    with pytest.raises(Exception, match="no preprocessor"):
        control.preprocess("depth-of-nowhere", square(8, 4), 8, 8)


# --- installing --


def test_a_controlnet_installs_offline_with_its_sha256_and_an_audit_entry(team, demo_controlnet, models_dir):
    folder = models_dir / "_controlnets" / demo_controlnet.id
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "controlnet.json",
        "diffusion_pytorch_model.safetensors",
    ]
    import hashlib

    weights = (folder / "diffusion_pytorch_model.safetensors").read_bytes()
    assert demo_controlnet.sha256 == hashlib.sha256(weights).hexdigest()
    meta = json.loads((folder / "controlnet.json").read_text())
    assert (meta["family"], meta["name"], meta["installed_by"]) == ("demo", "Demo canny", "root")
    event = AuditEvent.objects.get(action="model.install", target=f"controlnet:{demo_controlnet.id}")
    assert event.details["sha256"] == demo_controlnet.sha256
    info = registry.get_controlnet(demo_controlnet.id)
    assert info is not None and info.family == "demo"
    assert [m.id for m in registry.list_models()] == ["demo"]  # not taken for a model


def test_the_family_is_read_from_the_config_and_a_hand_made_one_must_be_named(
    team, sdxl, demo_model_dir, tmp_path
):
    _model_id, folder = sdxl
    source = library_models.build_controlnet(folder, tmp_path / "incoming" / "sdxl-lines")
    installed = library.do_install_controlnet(team["root"], str(source), name="SDXL lines")
    assert installed.family == "sdxl"
    with pytest.raises(InvalidInput) as refused:
        library.do_install_controlnet(team["root"], str(source), name="Other", family="sd1")
    assert "for Stable Diffusion XL models" in refused.value.errors["family"][0]
    demo_source = library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "demo")
    with pytest.raises(InvalidInput) as unnamed:
        library.do_install_controlnet(team["root"], str(demo_source))
    assert "choose the family" in unnamed.value.errors["family"][0]


def test_a_pickle_controlnet_is_refused_and_never_unpickled(team, models_dir, demo_model_dir, tmp_path):
    source = library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "pickled")
    weights = source / "diffusion_pytorch_model.safetensors"
    weights.unlink()

    class Boom:
        def __reduce__(self):
            return (pytest.fail, ("the pickle was loaded",))

    (source / "diffusion_pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    with pytest.raises(InvalidInput) as refused:
        library.do_install_controlnet(team["root"], str(source), family="demo")
    assert "pickle weights are never loaded" in refused.value.errors["path"][0]
    assert "diffusion_pytorch_model.bin" in refused.value.errors["path"][0]
    # A pickle under the safetensors name is refused by its header, unread.
    weights.write_bytes(pickle.dumps(Boom()))
    (source / "diffusion_pytorch_model.bin").unlink()
    with pytest.raises(InvalidInput) as named:
        library.do_install_controlnet(team["root"], str(source), family="demo")
    assert "not a safetensors file" in named.value.errors["path"][0]
    # A lone .pth file is refused for what it is.
    lone = tmp_path / "control.pth"
    lone.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(InvalidInput, match="pickle format"):
        library.do_install_controlnet(team["root"], str(lone), family="demo")
    assert not (models_dir / "_controlnets").exists() or not any((models_dir / "_controlnets").iterdir())


# --- jobs --


def test_a_demo_controlnet_steers_a_job_and_the_asset_keeps_its_map_and_provenance(
    team, demo, demo_controlnet
):
    control_image = upload(team, square(DEMO_SIZE, 32))
    base = {"prompt": "a red circle", "model": demo, "steps": 3, "seed": 5, "width": 64, "height": 64}
    _plain_job, (plain,) = run(team, base)
    unit = {"id": demo_controlnet.id, "image": str(control_image.id), "preprocessor": "canny", "weight": 1.5}
    job, (asset,) = run(team, {**base, "controlnets": [unit]})
    assert job.params["controlnets"] == [
        {
            "id": demo_controlnet.id,
            "name": "Demo canny",
            "sha256": demo_controlnet.sha256,
            "image": str(control_image.id),
            "preprocessor": "canny",
            "weight": 1.5,
            "start": 0.0,
            "end": 1.0,
        }
    ]
    assert np.abs(pixels(asset) - pixels(plain)).mean() > 1.0  # it steered

    (stored,) = asset.control_maps.all()
    assert (stored.job_id, stored.unit, stored.source_id) == (job.id, 0, control_image.id)
    with stored.file.open("rb") as f:
        data = f.read()
    import hashlib

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    expected = control.preprocess("canny", square(DEMO_SIZE, 32), 64, 64)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), np.asarray(expected))

    unit_record = {**job.params["controlnets"][0], "map_sha256": stored.sha256}
    assert asset.params["controlnets"] == [unit_record]
    with asset.file.open("rb") as f:
        inside = read_provenance(f.read())["studio"]
    assert inside["controlnets"] == [unit_record]
    assert "ControlNet 0: " in read_provenance(asset.file.open("rb").read())["parameters"]

    # The Content Credentials name the unit too: in the generation assertion and in its parameters.
    from gallery import credentials, provenance

    manifest = provenance.generation_manifest(
        asset, project_slug="poster", project_name="Poster", author="bob", with_parent=False
    )
    (generation,) = [a["data"] for a in manifest["assertions"] if a["label"] == credentials.GENERATION_LABEL]
    assert generation["controlnets"] == [unit_record]
    assert asset.credentials == "signed"
    with asset.file.open("rb") as f:
        report = credentials.read(f.read())
    assert report.state == "trusted"
    assert report.chain[0].parameters["controlnets"] == [unit_record]


def test_two_controlnets_at_once_each_keep_their_map(team, demo, demo_controlnet, demo_model_dir, tmp_path):
    second = library.do_install_controlnet(
        team["root"],
        str(library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "lines", seed=1)),
        name="Demo lines",
        family="demo",
    )
    edges, drawn = upload(team, square(DEMO_SIZE, 24)), upload(team, sketch(DEMO_SIZE))
    units = [
        {
            "id": demo_controlnet.id,
            "image": str(edges.id),
            "preprocessor": "canny",
            "weight": 0.8,
            "end": 0.5,
        },
        {"id": second.id, "image": str(drawn.id), "preprocessor": "lineart", "start": 0.2},
    ]
    job, assets = run(
        team, {"prompt": "a blue ring", "model": demo, "steps": 3, "num_images": 2, "controlnets": units}
    )
    assert len(assets) == 2
    maps = list(ControlMap.objects.filter(job=job).order_by("unit"))
    assert [(m.unit, m.source_id) for m in maps] == [(0, edges.id), (1, drawn.id)]
    for asset in assets:  # stored once, linked to each image
        assert sorted(m.id for m in asset.control_maps.all()) == sorted(m.id for m in maps)
        assert [u["map_sha256"] for u in asset.params["controlnets"]] == [m.sha256 for m in maps]
        assert [u["preprocessor"] for u in asset.params["controlnets"]] == ["canny", "lineart"]


def test_an_sdxl_controlnet_steers_an_sdxl_job(team, sdxl, tmp_path):
    model_id, folder = sdxl
    source = library_models.build_controlnet(folder, tmp_path / "incoming" / "sdxl-canny")
    installed = library.do_install_controlnet(team["root"], str(source), name="SDXL canny")
    control_image = upload(team, square(SDXL_SIZE, 200))
    unit = {"id": installed.id, "image": str(control_image.id), "preprocessor": "canny"}
    body = {"prompt": "a red circle", "model": model_id, "width": SDXL_SIZE, "height": SDXL_SIZE, "steps": 2}
    job, (asset,) = run(team, {**body, "controlnets": [unit]})
    (stored,) = asset.control_maps.all()
    assert (stored.width, stored.height) == (SDXL_SIZE, SDXL_SIZE)
    assert asset.params["controlnets"][0]["sha256"] == installed.sha256
    assert np.isfinite(pixels(asset)).all()


def test_img2img_and_inpainting_take_controlnets_too(team, demo, demo_controlnet):
    start = upload(team, Image.new("RGB", (64, 64), (200, 40, 40)))
    edges = upload(team, square(64, 32))
    unit = {"id": demo_controlnet.id, "image": str(edges.id), "preprocessor": "canny"}
    base = {"prompt": "a red circle", "model": demo, "steps": 4, "seed": 2, "init_asset": str(start.id)}
    _job, (repainted,) = run(team, {**base, "mode": "img2img", "strength": 0.75, "controlnets": [unit]})
    assert repainted.params["controlnets"][0]["map_sha256"]
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle([16, 16, 47, 47], fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    _job, (inpainted,) = run(team, {**base, "mode": "inpaint", "mask": data_url, "controlnets": [unit]})
    assert inpainted.control_maps.count() == 1 and inpainted.mask
    kept = pixels(inpainted)[:8, :8]  # outside the mask: the start image, exactly
    assert np.abs(kept - np.array([200, 40, 40])).max() <= 1


def test_jobs_batch_only_with_the_same_control_settings_and_their_maps_stay_their_own(
    team, demo, demo_controlnet, caplog
):
    import logging

    first, second = upload(team, square(64, 16)), upload(team, square(64, 48))
    unit = {"id": demo_controlnet.id, "preprocessor": "canny", "weight": 0.9}
    body = {"prompt": "a red circle", "model": demo, "steps": 3}
    a = services.do_create_job(
        team["bob"],
        team["project"],
        {**body, "seed": 1, "num_images": 2, "controlnets": [{**unit, "image": str(first.id)}]},
    )
    b = services.do_create_job(
        team["alice"],
        team["project"],
        {**body, "seed": 9, "controlnets": [{**unit, "image": str(second.id)}]},
    )
    other = services.do_create_job(
        team["alice"],
        team["project"],
        {**body, "seed": 9, "controlnets": [{**unit, "image": str(second.id), "weight": 0.5}]},
    )
    keys = [JobParams.model_validate(j.params).batch_key() for j in (a, b, other)]
    assert keys[0] == keys[1] != keys[2]
    with caplog.at_level(logging.INFO, logger="generation.worker"):
        assert run_job(str(a.id)) == "succeeded"
    assert "Running 2 jobs in one call" in caplog.text
    for job, image, count in ((a, first, 2), (b, second, 1)):
        job.refresh_from_db()
        assert job.status == "succeeded"
        (stored,) = ControlMap.objects.filter(job=job)
        assert stored.source_id == image.id
        expected = control.preprocess("canny", square(64, 16 if image == first else 48), 64, 64)
        with stored.file.open("rb") as f:
            assert np.array_equal(np.asarray(Image.open(f).convert("RGB")), np.asarray(expected))
        assert Asset.objects.filter(job=job).count() == count
    other.refresh_from_db()
    assert other.status == "queued"  # another weight: not in that call
    assert run_job(str(other.id)) == "succeeded"
    # Alone, b makes what it made in the batch: its own control image reached its own image.
    alone = services.do_create_job(
        team["alice"],
        team["project"],
        {**body, "seed": 9, "controlnets": [{**unit, "image": str(second.id)}]},
    )
    assert run_job(str(alone.id)) == "succeeded"
    batched = Asset.objects.get(job=b)
    assert np.abs(pixels(Asset.objects.get(job=alone)) - pixels(batched)).mean() <= 2.0


# --- refusals --


def test_a_controlnet_of_another_family_or_network_is_a_400_on_the_field(
    team, demo, demo_controlnet, sdxl, demo_model_dir, tmp_path, settings
):
    sdxl_id, _folder = sdxl
    image = upload(team, square(64, 32))
    unit = {"id": demo_controlnet.id, "image": str(image.id)}
    with pytest.raises(InvalidInput) as wrong_family:
        services.do_create_job(
            team["bob"], team["project"], {"prompt": "x", "model": sdxl_id, "controlnets": [unit]}
        )
    assert wrong_family.value.errors["controlnets"] == ["Demo canny is for Demo models, not Tiny SDXL."]
    # A hand-made demo ControlNet for a demo model of other widths: same family, wrong network.
    from generation.engine.demo import build_random_model

    narrow = build_random_model(tmp_path / "incoming" / "narrow", unet_channels=(32, 64, 64))
    narrow_id = library.do_install_model(team["root"], str(narrow), name="Narrow demo").id
    with pytest.raises(InvalidInput) as misfit:
        services.do_create_job(
            team["bob"], team["project"], {"prompt": "x", "model": narrow_id, "controlnets": [unit]}
        )
    assert "block_out_channels" in misfit.value.errors["controlnets"][0]
    assert [c["id"] for c in registry.get_model(narrow_id).public()["controlnets"]] == []


def test_bad_start_and_end_and_missing_images_are_400s(team, demo, demo_controlnet):
    image = upload(team, square(64, 32))
    body = {"prompt": "x", "model": demo}
    unit = {"id": demo_controlnet.id, "image": str(image.id)}
    for start, end in ((0.6, 0.4), (0.5, 0.5)):
        with pytest.raises(InvalidInput) as refused:
            services.do_create_job(
                team["bob"], team["project"], {**body, "controlnets": [{**unit, "start": start, "end": end}]}
            )
        assert "must start before it ends" in refused.value.errors["controlnets"][0]
    with pytest.raises(InvalidInput) as out_of_range:
        services.do_create_job(team["bob"], team["project"], {**body, "controlnets": [{**unit, "end": 1.5}]})
    assert "controlnets" in str(out_of_range.value.errors)
    with pytest.raises(InvalidInput) as too_many:
        services.do_create_job(team["bob"], team["project"], {**body, "controlnets": [unit] * 5})
    assert too_many.value.errors["controlnets"] == ["At most 4 ControlNets at once."]
    elsewhere = factories.asset(factories.project(team["charlie"], "Elsewhere"), team["charlie"])
    with pytest.raises(InvalidInput) as foreign:
        services.do_create_job(
            team["bob"], team["project"], {**body, "controlnets": [{**unit, "image": str(elsewhere.id)}]}
        )
    assert foreign.value.errors["controlnets"] == ["no such control image in this project."]
    with pytest.raises(InvalidInput) as unknown:
        services.do_create_job(
            team["bob"], team["project"], {**body, "controlnets": [{**unit, "id": "nope"}]}
        )
    assert unknown.value.errors["controlnets"] == ["no such ControlNet: 'nope'."]


def test_the_api_answers_400_on_the_field(team, demo, demo_controlnet, client):
    image = upload(team, square(64, 32))
    client.force_login(team["bob"])
    unit = {"id": demo_controlnet.id, "image": str(image.id), "start": 0.9, "end": 0.1}
    response = client.post(
        "/api/v1/projects/poster/jobs",
        {"prompt": "x", "controlnets": [unit]},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert "controlnets" in response.json()["errors"]


# --- the asset page and the map's URL --


def test_the_asset_page_shows_the_map_and_outsiders_get_404(team, demo, demo_controlnet, client):
    control_image = upload(team, square(64, 32))
    unit = {"id": demo_controlnet.id, "image": str(control_image.id), "preprocessor": "canny"}
    _job, (asset,) = run(team, {"prompt": "a red circle", "model": demo, "steps": 2, "controlnets": [unit]})
    map_url = f"/assets/{asset.id}/controls/0.png"
    client.force_login(team["vera"])  # a viewer of the project
    page = client.get(f"/assets/{asset.id}/").content.decode()
    assert map_url in page and "Demo canny" in page and f"/assets/{control_image.id}/" in page
    shown = client.get(map_url)
    assert shown.status_code == 200 and shown["Content-Type"] == "image/png"
    assert (
        b"".join(shown.streaming_content if shown.streaming else [shown.content])[:8] == b"\x89PNG\r\n\x1a\n"
    )
    assert client.get(f"/assets/{asset.id}/controls/1.png").status_code == 404
    api = client.get(f"/api/v1/assets/{asset.id}")
    assert api.json()["control_map_urls"] == [f"/api/v1/assets/{asset.id}/controls/0"]
    assert client.get(f"/api/v1/assets/{asset.id}/controls/0").status_code == 200
    client.force_login(team["charlie"])  # no member of the project
    assert client.get(map_url).status_code == 404
    assert client.get(f"/api/v1/assets/{asset.id}/controls/0").status_code == 404


def test_the_map_goes_with_the_last_image_that_links_it(team, demo, demo_controlnet):
    from gallery.services import do_delete_asset

    control_image = upload(team, square(64, 32))
    unit = {"id": demo_controlnet.id, "image": str(control_image.id)}
    _job, assets = run(
        team, {"prompt": "x", "model": demo, "steps": 2, "num_images": 2, "controlnets": [unit]}
    )
    (stored,) = ControlMap.objects.all()
    name = stored.file.name
    do_delete_asset(team["alice"], assets[0])
    assert ControlMap.objects.filter(id=stored.id).exists()
    do_delete_asset(team["alice"], assets[1])
    assert not ControlMap.objects.exists()
    assert not stored.file.storage.exists(name)


# --- what the model list says --


def test_models_list_controlnet_as_a_feature_only_with_a_fitting_controlnet(
    team, demo, sdxl, demo_model_dir, tmp_path, client
):
    client.force_login(team["bob"])

    def features() -> dict[str, tuple[bool, list[str]]]:
        return {
            m["id"]: ("controlnet" in m["features"], [c["id"] for c in m["controlnets"]])
            for m in client.get("/api/v1/models").json()
        }

    sdxl_id, _folder = sdxl
    assert features() == {demo: (False, []), sdxl_id: (False, [])}
    installed = library.do_install_controlnet(
        team["root"],
        str(library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "c")),
        family="demo",
    )
    assert features() == {demo: (True, [installed.id]), sdxl_id: (False, [])}
    library.do_remove(team["root"], "controlnet", installed.id)
    assert features() == {demo: (False, []), sdxl_id: (False, [])}
    assert AuditEvent.objects.filter(action="model.remove", target=f"controlnet:{installed.id}").exists()


# --- the AUTOMATIC1111 API --


def test_an_a1111_controlnet_unit_becomes_a_job_with_that_controlnet(
    team, demo, demo_controlnet, monkeypatch
):
    from django.test import Client

    monkeypatch.setattr(services, "enqueue", lambda job_id, queue: run_job(str(job_id)))
    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {factories.token(team['bob'])}", HTTP_X_STUDIO_PROJECT="poster"
    )
    buffer = io.BytesIO()
    square(64, 32).save(buffer, format="PNG")
    unit = {
        "enabled": True,
        "input_image": base64.b64encode(buffer.getvalue()).decode(),
        "module": "canny",
        "model": f"Demo canny [{demo_controlnet.sha256[:8]}]",
        "weight": 0.7,
        "guidance_start": 0.1,
        "guidance_end": 0.9,
        "threshold_a": 100,
        "threshold_b": 200,
        "pixel_perfect": True,
    }
    body = {
        "prompt": "a red circle",
        "seed": 4,
        "steps": 3,
        "width": 64,
        "height": 64,
        "alwayson_scripts": {"ControlNet": {"args": [unit, {"enabled": False}]}, "ADetailer": {"args": []}},
    }
    response = client.post("/sdapi/v1/txt2img", data=json.dumps(body), content_type="application/json")
    assert response.status_code == 200, response.content
    info = json.loads(response.json()["info"])
    job = services.Job.objects.get(id=info["studio"]["jobs"][0])
    (used,) = job.params["controlnets"]
    assert (used["id"], used["preprocessor"], used["weight"], used["start"], used["end"]) == (
        demo_controlnet.id,
        "canny",
        0.7,
        0.1,
        0.9,
    )
    control_image = Asset.objects.get(id=used["image"])
    assert control_image.kind == "upload" and control_image.project == team["project"]
    asset = Asset.objects.get(job=job)
    assert asset.control_maps.get().source_id == control_image.id
    assert "alwayson_scripts.ADetailer is not served and was ignored." in info["studio"]["ignored"]
    assert 'ControlNet 0: "Module: canny, Model: Demo canny' in info["infotexts"][0]
    # png-info reads the unit back whole, and the checkpoint stays the checkpoint.
    read = client.post(
        "/sdapi/v1/png-info",
        data=json.dumps({"image": response.json()["images"][0]}),
        content_type="application/json",
    ).json()["parameters"]
    assert read["Model"] == "demo"
    assert read["ControlNet 0"].startswith("Module: canny, Model: Demo canny [")
    assert "Guidance End: 0.9" in read["ControlNet 0"]

    # img2img: a unit without an image steers from the start image; what is not served is a 400 on the field.
    start = base64.b64encode(buffer.getvalue()).decode()
    img2img = {**body, "init_images": [start], "denoising_strength": 0.6}
    img2img["alwayson_scripts"] = {
        "controlnet": {"args": [{**unit, "input_image": None, "module": "invert"}]}
    }
    response = client.post("/sdapi/v1/img2img", data=json.dumps(img2img), content_type="application/json")
    assert response.status_code == 200, response.content
    job = services.Job.objects.get(id=json.loads(response.json()["info"])["studio"]["jobs"][0])
    assert job.params["controlnets"][0]["image"] == job.params["init_asset"]
    assert job.params["controlnets"][0]["preprocessor"] == "lineart"
    for bad, words in (
        ({"threshold_a": 50}, "thresholds are 100 and 200"),
        ({"model": "nope"}, "no such ControlNet"),
        ({"input_image": None}, "give its image"),
    ):
        wrong = {**body, "alwayson_scripts": {"controlnet": {"args": [{**unit, **bad}]}}}
        response = client.post("/sdapi/v1/txt2img", data=json.dumps(wrong), content_type="application/json")
        assert response.status_code == 400
        assert words in " ".join(response.json()["errors"]["alwayson_scripts.controlnet.args"])
    lineart_standard = {
        **body,
        "alwayson_scripts": {"controlnet": {"args": [{**unit, "module": "depth_midas"}]}},
    }
    response = client.post(
        "/sdapi/v1/txt2img", data=json.dumps(lineart_standard), content_type="application/json"
    )
    assert response.status_code == 400


# --- project styles --


def test_a_styles_controlnet_defaults_are_applied_and_a_lock_holds(team, demo, demo_controlnet):
    from generation import styles
    from generation.schemas import StyleIn

    layout = upload(team, square(64, 40))
    units = [
        {
            "control": "canny",
            "id": demo_controlnet.id,
            "image": str(layout.id),
            "weight": 0.6,
            "guidance_end": 0.8,
        }
    ]
    style = styles.do_create_style(
        team["alice"],
        team["project"],
        StyleIn.model_validate({"name": "Layout", "controlnet_defaults": units}),
    )
    body = {"prompt": "a red circle", "model": demo, "steps": 2, "style": style.id}
    job, (asset,) = run(team, body)
    (used,) = job.params["controlnets"]
    assert (used["id"], used["image"], used["preprocessor"], used["weight"], used["end"]) == (
        demo_controlnet.id,
        str(layout.id),
        "canny",
        0.6,
        0.8,
    )
    assert asset.control_maps.get().source_id == layout.id
    # The job's own units replace the style's (nothing is locked yet); an empty list means none.
    other = upload(team, sketch(64))
    own = {"id": demo_controlnet.id, "image": str(other.id), "preprocessor": "lineart"}
    job, _ = run(team, {**body, "controlnets": [own]})
    assert [u["image"] for u in job.params["controlnets"]] == [str(other.id)]
    job, _ = run(team, {**body, "controlnets": []})
    assert job.params.get("controlnets", []) == []

    # Locked: a job may leave them out (the style's are used) or send the style's own, nothing else.
    from generation.schemas import StylePatch

    styles.do_edit_style(team["alice"], style, StylePatch(locks=["controlnets"]))
    with pytest.raises(InvalidInput) as locked:
        services.do_create_job(team["bob"], team["project"], {**body, "controlnets": [own]})
    assert locked.value.errors["controlnets"] == [
        "The style 'Layout' locks the ControlNets; leave it out or choose another style."
    ]
    same = {
        "id": demo_controlnet.id,
        "image": str(layout.id),
        "preprocessor": "canny",
        "weight": 0.6,
        "end": 0.8,
    }
    job, _ = run(team, {**body, "controlnets": [same]})
    assert job.params["controlnets"][0]["weight"] == 0.6

    # A unit without an image steers from the job's start image; text to image then has none to give.
    styles.do_edit_style(
        team["alice"],
        style,
        StylePatch.model_validate({"controlnet_defaults": [{**units[0], "image": None}]}),
    )
    with pytest.raises(InvalidInput) as no_image:
        services.do_create_job(team["bob"], team["project"], body)
    assert "from the start image" in no_image.value.errors["controlnets"][0]
    start = upload(team, Image.new("RGB", (64, 64), (10, 120, 200)))
    job, _ = run(team, {**body, "mode": "img2img", "init_asset": str(start.id)})
    assert job.params["controlnets"][0]["image"] == str(start.id)


def test_a_styles_controlnet_units_are_checked_when_written(team, demo, demo_controlnet):
    from generation import styles
    from generation.schemas import StyleIn

    elsewhere = factories.asset(factories.project(team["charlie"], "Elsewhere"), team["charlie"])
    for unit, words in (
        ({"control": "canny", "id": demo_controlnet.id, "guidance_start": 0.7, "guidance_end": 0.2}, "below"),
        ({"control": "canny", "id": demo_controlnet.id, "image": str(elsewhere.id)}, "no such image"),
    ):
        with pytest.raises(InvalidInput) as refused:
            styles.do_create_style(
                team["alice"],
                team["project"],
                StyleIn.model_validate({"name": "X", "controlnet_defaults": [unit]}),
            )
        assert words in refused.value.errors["controlnet_defaults"][0]


# --- Manage → Models and the command --


def test_the_models_page_installs_lists_and_removes_controlnets(team, demo, demo_model_dir, tmp_path, client):
    source = library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "page-canny")
    client.force_login(team["root"])
    form = {"kind": "controlnet", "path": str(source), "name": "Page canny", "family": ""}
    refused = client.post("/manage/models/", form)
    assert refused.status_code == 400 and "choose the family" in refused.content.decode()
    response = client.post("/manage/models/", {**form, "family": "demo"})
    assert response.status_code == 302
    page = client.get("/manage/models/").content.decode()
    assert (
        'data-controlnet="page-canny"' in page and registry.get_controlnet("page-canny").sha256[:12] in page
    )
    assert "demo" in page.split('data-controlnet="page-canny"')[1].split("</tr>")[0]  # the model it steers
    assert client.post("/manage/models/controlnet/page-canny/remove/").status_code == 302
    assert registry.get_controlnet("page-canny") is None


def test_the_command_installs_and_removes_a_controlnet(team, models_dir, demo_model_dir, tmp_path, capsys):
    from django.core.management import call_command

    source = library_models.build_controlnet(demo_model_dir, tmp_path / "incoming" / "cli")
    call_command("install_model", str(source), "--controlnet", "--family", "demo", "--name", "CLI lines")
    assert "Installed ControlNet 'cli-lines'" in capsys.readouterr().out
    call_command("remove_model", "cli-lines", "--controlnet")
    assert registry.get_controlnet("cli-lines") is None


def test_a_flux_controlnet_steers_a_flux_job(team, models_dir, tmp_path):
    source = library_models.build_folder("flux", tmp_path / "incoming" / "tiny-flux")
    model_id = library.do_install_model(team["root"], str(source), name="Tiny FLUX").id
    cn_source = library_models.build_flux_controlnet(source, tmp_path / "incoming" / "flux-canny")
    installed = library.do_install_controlnet(team["root"], str(cn_source), name="FLUX canny")
    assert installed.family == "flux"
    assert registry.get_model(model_id).public()["features"] == ["controlnet"]  # FLUX: no UNet controls
    size = library_models.FAMILY_SIZES["flux"]
    control_image = upload(team, square(size, 160))
    unit = {"id": installed.id, "image": str(control_image.id), "preprocessor": "canny"}
    body = {"prompt": "a red circle", "model": model_id, "width": size, "height": size, "steps": 2, "seed": 1}
    _plain, (plain,) = run(team, body)
    job, (asset,) = run(team, {**body, "controlnets": [unit]})
    assert asset.control_maps.get().sha256 == asset.params["controlnets"][0]["map_sha256"]
    assert np.abs(pixels(asset) - pixels(plain)).mean() > 0.5  # it steered
    # From a start image too (FLUX's ControlNet image-to-image pipeline).
    img2img = {**body, "mode": "img2img", "init_asset": str(asset.id), "strength": 0.8, "controlnets": [unit]}
    _job, (repainted,) = run(team, img2img)
    assert repainted.control_maps.count() == 1
    mask = Image.new("L", (size, size), 0)
    ImageDraw.Draw(mask).rectangle([0, 0, size // 2, size], fill=255)
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    inpaint = {
        **img2img,
        "mode": "inpaint",
        "mask": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
    }
    _job, (inpainted,) = run(team, inpaint)
    assert inpainted.control_maps.count() == 1


def test_a_controlnet_job_keeps_its_progress_previews_seeds_and_cancel(
    team, demo, demo_controlnet, monkeypatch
):
    from generation import worker
    from generation.models import Job
    from tests.unit.test_job_lifecycle import Listener

    control_image = upload(team, square(64, 32))
    unit = {"id": demo_controlnet.id, "image": str(control_image.id), "preprocessor": "canny"}
    body = {"prompt": "a red circle", "model": demo, "steps": 5, "seed": 30, "controlnets": [unit]}
    job = services.do_create_job(team["bob"], team["project"], {**body, "num_images": 2})
    listener = Listener(job.id)
    assert run_job(str(job.id)) == "succeeded"
    events = listener.drain()
    assert [e["step"] for e in events if e["type"] == "progress"] == [1, 2, 3, 4, 5]
    assert any(e["type"] == "preview" for e in events)
    assert events[-1]["type"] == "succeeded"
    _seed1, second = Asset.objects.filter(job=job).order_by("index")
    assert second.seed == 31
    _job, (alone,) = run(team, {**body, "seed": 31})
    assert np.abs(pixels(alone) - pixels(second)).mean() <= 2.0  # each image its own seed, alone or not

    victim = services.do_create_job(team["bob"], team["project"], {**body, "steps": 8})
    on_step = worker.BatchMonitor.on_step

    def stepping(self, step, total):
        on_step(self, step, total)
        if step == 2:
            services.do_cancel_job(team["bob"], Job.objects.get(id=victim.id))

    monkeypatch.setattr(worker.BatchMonitor, "on_step", stepping)
    assert run_job(str(victim.id)) == "canceled"
    victim.refresh_from_db()
    assert victim.status == "canceled" and victim.progress_step < 8
    assert not ControlMap.objects.filter(job=victim).exists()


def test_controlnet_units_leave_room_for_fewer_images_in_a_call(team, demo, monkeypatch):
    from generation.engine import runner

    monkeypatch.setattr(runner, "host_memory_available", lambda: 10 * 10**9)
    model = registry.get_model(demo)
    alone = runner.batch_capacity(model, 512, 512)
    assert runner.batch_capacity(model, 512, 512, controlnets=2) == alone // 2


def test_the_generate_form_offers_the_units_only_data_it_needs(team, demo, demo_controlnet, client):
    client.force_login(team["bob"])
    page = client.get("/p/poster/").content.decode()
    assert 'id="controlnet-field"' in page and 'id="controlnet-unit-template"' in page
    assert "generation/controlnet.js" in page and "<script>" not in page  # no inline script (CSP)
    models = json.loads(
        page.split('id="models-data" data-json="')[1].split('"></div>')[0].replace("&quot;", '"')
    )
    (demo_model,) = models
    assert demo_model["features"] == ["regions", "reference", "controlnet"]
    assert demo_model["controlnets"] == [{"id": demo_controlnet.id, "name": "Demo canny", "family": "demo"}]


def test_the_form_can_fill_in_a_styles_control_image_beyond_the_latest(
    team, demo, demo_controlnet, client, settings
):
    from generation import styles, views
    from generation.schemas import StyleIn

    layout = upload(team, square(64, 40))
    for _ in range(views.START_IMAGE_CHOICES):  # newer images push it out of the latest ones
        factories.asset(team["project"], team["bob"])
    unit = {"control": "canny", "id": demo_controlnet.id, "image": str(layout.id)}
    styles.do_create_style(
        team["alice"],
        team["project"],
        StyleIn.model_validate({"name": "Layout", "controlnet_defaults": [unit]}),
    )
    client.force_login(team["bob"])
    page = client.get("/p/poster/").content.decode()
    raw = page.split('id="start-images-data" data-json="')[1].split('"></div>')[0].replace("&quot;", '"')
    ids = [image["id"] for image in json.loads(raw)]
    assert len(ids) == views.START_IMAGE_CHOICES + 1 and ids[-1] == str(layout.id)


def test_a_depth_unit_needs_an_installed_annotator_and_then_keeps_its_depth_map(
    team, demo, demo_controlnet, tmp_path, client
):
    control_image = upload(team, square(DEMO_SIZE, 32))
    base = {"prompt": "a red circle", "model": demo, "steps": 2, "seed": 1, "width": 64, "height": 64}
    unit = {"id": demo_controlnet.id, "image": str(control_image.id), "preprocessor": "depth"}
    with pytest.raises(InvalidInput) as refused:
        services.do_create_job(team["bob"], team["project"], {**base, "controlnets": [unit]})
    assert refused.value.errors["controlnets"] == [library.annotator_missing("depth")]
    client.force_login(team["bob"])
    assert 'value="depth"' not in client.get("/p/poster/").content.decode()

    source = library_models.build_dpt(tmp_path / "incoming" / "tiny-dpt")
    annotator = library.do_install_annotator(team["root"], str(source), name="Tiny depth")
    assert 'value="depth"' in client.get("/p/poster/").content.decode()
    assert 'value="pose"' not in client.get("/p/poster/").content.decode()
    job, (asset,) = run(team, {**base, "controlnets": [unit]})
    (stored,) = asset.control_maps.all()
    with stored.file.open("rb") as f:
        depth_map = np.asarray(Image.open(io.BytesIO(f.read())).convert("RGB"))
    from generation.engine import annotators

    expected = annotators.detect(
        "depth", control.fit(square(DEMO_SIZE, 32), 64, 64), registry.get_annotator(annotator.id), 64, 64
    )
    assert np.array_equal(depth_map, np.asarray(expected.convert("RGB")))
    assert (depth_map[..., 0] == depth_map[..., 1]).all()  # a grey map
    assert job.params["controlnets"][0]["preprocessor"] == "depth"
