"""ControlNet: an admin installs a ControlNet folder like a LoRA; an artist's job names it with a control
image of the project and a preprocessor; the worker makes the control map, the ControlNet steers the image, and the
asset keeps the map (served under the asset's own permissions) and names the unit in its provenance."""

from __future__ import annotations

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
from generation.tasks import run_job
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests import library_models

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

    assert set(Preprocessor.__args__) == set(control.PREPROCESSORS)
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
