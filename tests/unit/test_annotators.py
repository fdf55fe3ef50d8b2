"""ControlNet annotators: an admin installs a depth model (DPT, Depth Anything) or a pose model (ViTPose) from
a transformers folder; the engine draws the control map a ControlNet reads, and the "depth" and "pose"
preprocessors are offered only while an annotator of their kind is installed. Pickles, other model types and
folders with symbolic links are refused before anything is written."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from generation import library
from generation.engine import annotators, registry
from studio.errors import InvalidInput
from studio.models import AuditEvent
from tests.library_models import build_dpt

pytestmark = pytest.mark.django_db

WEIGHTLESS = ["canny", "lineart", "scribble", "none"]


def build_depth_anything(path: Path) -> Path:
    """A tiny random-weight Depth Anything (a DINOv2 backbone), without a preprocessor_config.json."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    torch.manual_seed(1)
    # Which stages feed the depth head is one of the backbone options the config takes as keywords.
    stages: dict[str, Any] = {"out_features": ["stage1", "stage2", "stage3", "stage4"]}
    backbone = Dinov2Config(
        hidden_size=16,
        num_hidden_layers=4,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=28,
        patch_size=14,
        reshape_hidden_states=False,
        **stages,
    )
    config = DepthAnythingConfig(
        backbone_config=backbone,
        neck_hidden_sizes=[8, 8, 8, 8],
        fusion_hidden_size=8,
        head_hidden_size=8,
        reassemble_hidden_size=16,
        patch_size=14,
    )
    DepthAnythingForDepthEstimation(config).save_pretrained(str(path), safe_serialization=True)
    return path


def build_vitpose(path: Path, keypoints: int = 17) -> Path:
    """A tiny random-weight ViTPose (COCO's 17 keypoints) with the ViTPose image processor's config."""
    import torch
    from transformers import (
        VitPoseBackboneConfig,
        VitPoseConfig,
        VitPoseForPoseEstimation,
        VitPoseImageProcessorPil,
    )

    torch.manual_seed(2)
    # The backbone's output layer and the head's keypoint count are options the configs take as keywords.
    last_layer: dict[str, Any] = {"out_indices": [2]}
    labels: dict[str, Any] = {"num_labels": keypoints}
    backbone = VitPoseBackboneConfig(
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_ratio=2,
        image_size=[64, 48],
        patch_size=[16, 16],
        **last_layer,
    )
    config = VitPoseConfig(backbone_config=backbone, **labels)
    VitPoseForPoseEstimation(config).save_pretrained(str(path), safe_serialization=True)
    VitPoseImageProcessorPil(size={"height": 64, "width": 48}).save_pretrained(str(path))
    return path


def picture(size: int = 64) -> Image.Image:
    """A reference image: a bright disc on a gradient."""
    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([x * 4 % 256, y * 4 % 256, np.full_like(x, 90)], axis=-1).astype(np.uint8)
    pixels[(x - size / 2) ** 2 + (y - size / 2) ** 2 < (size / 4) ** 2] = 250
    return Image.fromarray(pixels)


@pytest.fixture(autouse=True)
def fresh_cache():
    annotators.clear_cache()
    yield
    annotators.clear_cache()


def installed_files(models_dir: Path) -> list[Path]:
    return [p for p in models_dir.rglob("*") if p.is_file()] if models_dir.exists() else []


def test_a_dpt_annotator_installs_and_draws_a_depth_map_near_white(team, models_dir, tmp_path, client):
    source = build_dpt(tmp_path / "incoming" / "dpt-hybrid-midas")
    assert library.available_preprocessors() == WEIGHTLESS
    assert registry.annotator_for("depth") is None

    done = library.do_install_annotator(team["root"], str(source), name="MiDaS", ip="10.0.0.5")
    assert (done.id, done.name, done.family) == ("midas", "MiDaS", "depth")
    folder = models_dir / "_annotators" / "midas"
    assert sorted(p.name for p in folder.iterdir()) == [
        "annotator.json",
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    meta = json.loads((folder / "annotator.json").read_text())
    assert (meta["kind"], meta["model_type"], meta["installed_by"]) == ("depth", "dpt", "root")
    assert re.fullmatch(r"[0-9a-f]{64}", done.sha256) and meta["sha256"] == done.sha256
    event = AuditEvent.objects.get(action="model.install", target="annotator:midas")
    assert event.details["sha256"] == done.sha256
    assert event.details["kind"] == "depth"
    assert event.ip == "10.0.0.5"
    info = registry.annotator_for("depth")
    assert info is not None and info.id == "midas" and info.sha256 == done.sha256
    assert "midas" not in {m.id for m in registry.list_models()}  # an annotator is not a model
    assert library.available_preprocessors() == [*WEIGHTLESS, "depth"]

    client.force_login(team["root"])
    page = client.get("/manage/models/").content.decode()
    assert 'data-annotator="midas"' in page
    assert done.sha256[:12] in page
    assert "/manage/models/annotator/midas/remove/" in page
    listed = client.get("/api/v1/admin/annotators").json()
    assert listed == [info.public()]
    assert (listed[0]["kind"], listed[0]["model_type"], listed[0]["sha256"]) == ("depth", "dpt", done.sha256)

    depth = annotators.detect("depth", picture(), info, 64, 48)
    assert (depth.mode, depth.size) == ("RGB", (64, 48))
    pixels = np.asarray(depth)
    assert (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 0] == pixels[..., 2]).all()
    assert (pixels.min(), pixels.max()) == (0, 255)  # spread over the whole range
    assert len(np.unique(pixels)) > 16


def test_sharded_safetensors_install_whole(team, models_dir, tmp_path):
    source = build_dpt(tmp_path / "incoming" / "dpt-large", shard=True)
    shards = sorted(p.name for p in source.glob("*.safetensors"))
    assert len(shards) > 1 and (source / "model.safetensors.index.json").is_file()
    done = library.do_install_annotator(team["root"], str(source))
    folder = models_dir / "_annotators" / "dpt-large"
    assert sorted(p.name for p in folder.glob("*.safetensors")) == shards
    info = registry.get_annotator(done.id)
    assert info is not None
    assert annotators.detect("depth", picture(), info, 40, 40).size == (40, 40)


def test_depth_anything_without_a_processor_config_is_prepared_as_its_family_expects(
    team, models_dir, tmp_path, monkeypatch
):
    source = build_depth_anything(tmp_path / "incoming" / "depth-anything-small")
    assert not (source / "preprocessor_config.json").exists()
    done = library.do_install_annotator(team["root"], str(source))
    info = registry.get_annotator(done.id)
    assert info is not None and info.kind == "depth" and info.meta["model_type"] == "depth_anything"

    loads: list[str] = []
    original = annotators._load

    def counting(annotator: registry.AnnotatorInfo) -> annotators.LoadedAnnotator:
        loads.append(annotator.id)
        return original(annotator)

    monkeypatch.setattr(annotators, "_load", counting)
    depth = annotators.detect("depth", picture(), info, 56, 56)
    again = annotators.detect("depth", picture(), info, 56, 56)
    assert loads == [done.id]  # loaded once per process
    assert (depth.mode, depth.size) == ("RGB", (56, 56))
    assert np.array_equal(np.asarray(depth), np.asarray(again))
    processor = annotators.load(info).processor
    assert processor.keep_aspect_ratio and processor.ensure_multiple_of == 14
    assert list(processor.image_mean) == [0.485, 0.456, 0.406]


def test_a_depth_prediction_becomes_a_grey_map_with_near_white():
    near_on_the_right = np.tile(np.linspace(0.5, 3.0, 8), (4, 1))  # larger = nearer
    image = annotators.depth_to_image(near_on_the_right)
    pixels = np.asarray(image)
    assert (image.mode, image.size) == ("RGB", (8, 4))
    assert (pixels[:, 0] == 0).all() and (pixels[:, -1] == 255).all()
    assert (np.diff(pixels[0, :, 0].astype(int)) > 0).all()
    assert np.asarray(annotators.depth_to_image(np.full((4, 4), 2.0))).max() == 0  # flat: black


def test_a_vitpose_annotator_installs_and_draws_a_skeleton_map(team, models_dir, tmp_path, client):
    source = build_vitpose(tmp_path / "incoming" / "vitpose-base-simple")
    done = library.do_install_annotator(team["root"], str(source), name="ViTPose base")
    assert (done.id, done.family) == ("vitpose-base", "pose")
    assert library.available_preprocessors() == [*WEIGHTLESS, "pose"]
    info = registry.annotator_for("pose")
    assert info is not None and info.id == "vitpose-base"
    assert AuditEvent.objects.filter(action="model.install", target="annotator:vitpose-base").count() == 1
    client.force_login(team["root"])
    assert 'data-annotator="vitpose-base"' in client.get("/manage/models/").content.decode()
    assert [a["kind"] for a in client.get("/api/v1/admin/annotators").json()] == ["pose"]

    pose = annotators.detect("pose", picture(), info, 64, 48)
    assert (pose.mode, pose.size) == ("RGB", (64, 48))
    palette = {(0, 0, 0), *annotators.POSE_COLOURS}
    palette |= {tuple(round(c * annotators.LIMB_BRIGHTNESS) for c in col) for col in annotators.POSE_COLOURS}
    assert {tuple(int(v) for v in p) for p in np.asarray(pose).reshape(-1, 3)} <= palette

    with pytest.raises(ValueError, match="draws pose maps, not depth"):
        annotators.detect("depth", picture(), info, 64, 64)


def standing_person() -> list[tuple[float, float]]:
    """COCO's 17 keypoints of a figure facing the viewer in a 128×128 map (its left on the image's right)."""
    return [
        (64, 20),  # nose
        (68, 16), (60, 16), (72, 18), (56, 18),  # eyes, ears (left, right)
        (80, 36), (48, 36),  # shoulders
        (88, 56), (40, 56),  # elbows
        (92, 76), (36, 76),  # wrists
        (74, 76), (54, 76),  # hips
        (76, 100), (52, 100),  # knees
        (78, 122), (50, 122),  # ankles
    ]  # fmt: skip


def test_the_skeleton_draws_confident_limbs_in_openpose_colours_and_skips_the_rest():
    points = standing_person()
    scores = [0.9] * 17
    scores[annotators.COCO_KEYPOINTS.index("left_wrist")] = 0.1  # not seen
    pose = annotators.draw_pose(points, scores, 128, 128)
    pixels = np.asarray(pose)
    assert (pose.mode, pose.size) == ("RGB", (128, 128))

    def colour_at(x: float, y: float) -> tuple[int, ...]:
        return tuple(int(v) for v in pixels[round(y), round(x)])

    def limb_colour(start: str, end: str) -> tuple[int, ...]:
        index = annotators.OPENPOSE_LIMBS.index((start, end))
        return tuple(round(c * annotators.LIMB_BRIGHTNESS) for c in annotators.POSE_COLOURS[index])

    # The left upper arm, between the left shoulder (80, 36) and elbow (88, 56).
    assert colour_at(84, 46) == limb_colour("left_shoulder", "left_elbow")
    # The left forearm ends at the unseen wrist: not drawn.
    assert colour_at(90, 66) == (0, 0, 0)
    # The neck (between the shoulders, at (64, 36)) joins the nose above it.
    assert colour_at(64, 30) == limb_colour("neck", "nose")
    assert colour_at(64, 36) == annotators.POSE_COLOURS[annotators.OPENPOSE_POINTS.index("neck")]
    assert colour_at(64, 20) == annotators.POSE_COLOURS[0] == (255, 0, 0)  # the nose, OpenPose's red
    assert colour_at(5, 5) == (0, 0, 0)  # the background is black
    assert annotators.draw_pose(points, [0.1] * 17, 128, 128).getbbox() is None  # nothing confident


def test_a_pickle_annotator_is_refused_and_nothing_is_installed(team, models_dir, tmp_path):
    import torch

    source = build_dpt(tmp_path / "incoming" / "dpt-pickle")
    (source / "model.safetensors").unlink()
    torch.save({"weight": torch.zeros(2)}, source / "pytorch_model.bin")
    with pytest.raises(InvalidInput) as refused:
        library.do_install_annotator(team["root"], str(source))
    assert refused.value.message == (
        "This folder holds pickle weights (pytorch_model.bin), which are never loaded: an annotator's "
        "weights must be safetensors. Remove the pickle files (or convert the model to safetensors) and "
        "install again."
    )
    assert refused.value.errors == {"path": [refused.value.message]}

    # A pickle under a safetensors name is read no further than its first bytes.
    marker = tmp_path / "unpickled"

    class WritesAFile:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (source / "pytorch_model.bin").unlink()
    (source / "model.safetensors").write_bytes(pickle.dumps(WritesAFile()))
    with pytest.raises(InvalidInput, match="model.safetensors is not a safetensors file"):
        library.do_install_annotator(team["root"], str(source))
    assert not marker.exists()
    assert installed_files(models_dir) == []
    assert registry.list_annotators() == []
    assert not AuditEvent.objects.filter(action="model.install").exists()
    assert library.available_preprocessors() == WEIGHTLESS


def test_other_model_types_and_other_pose_layouts_are_refused(team, models_dir, tmp_path):
    source = build_dpt(tmp_path / "incoming" / "not-an-annotator")
    config = json.loads((source / "config.json").read_text())
    (source / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(InvalidInput) as refused:
        library.do_install_annotator(team["root"], str(source))
    assert refused.value.message == (
        "This folder's config.json is for model type 'bert'; the studio runs depth annotators of model type "
        "dpt or depth_anything, and pose annotators of model type vitpose."
    )
    hand_pose = build_vitpose(tmp_path / "incoming" / "hand-pose", keypoints=21)
    with pytest.raises(InvalidInput, match="predicts 21 keypoints; the studio draws COCO's 17"):
        library.do_install_annotator(team["root"], str(hand_pose))
    no_weights = build_dpt(tmp_path / "incoming" / "no-weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(InvalidInput, match="has no model.safetensors"):
        library.do_install_annotator(team["root"], str(no_weights))
    a_file = tmp_path / "incoming" / "depth.safetensors"
    a_file.write_bytes((build_dpt(tmp_path / "x" / "d") / "model.safetensors").read_bytes())
    with pytest.raises(InvalidInput, match="An annotator is a transformers model folder"):
        library.do_install_annotator(team["root"], str(a_file))
    linked = build_dpt(tmp_path / "incoming" / "linked")
    (linked / "preprocessor_config.json").unlink()
    (linked / "preprocessor_config.json").symlink_to(tmp_path / "x" / "d" / "preprocessor_config.json")
    with pytest.raises(InvalidInput, match="is a symbolic link"):
        library.do_install_annotator(team["root"], str(linked))
    assert installed_files(models_dir) == []
    assert not AuditEvent.objects.filter(action="model.install").exists()


def test_the_newest_annotator_of_a_kind_is_used_and_removing_it_brings_back_the_previous(
    team, models_dir, tmp_path, client
):
    first = library.do_install_annotator(team["root"], str(build_dpt(tmp_path / "a" / "midas")))
    second = library.do_install_annotator(
        team["root"], str(build_depth_anything(tmp_path / "b" / "depth-anything"))
    )
    pose = library.do_install_annotator(team["root"], str(build_vitpose(tmp_path / "c" / "vitpose")))
    chosen = registry.annotator_for("depth")
    assert chosen is not None and chosen.id == second.id
    assert library.available_preprocessors() == [*WEIGHTLESS, "depth", "pose"]
    with pytest.raises(InvalidInput, match="An annotator with the id 'midas' is already installed"):
        library.do_install_annotator(team["root"], str(tmp_path / "a" / "midas"))

    client.force_login(team["root"])
    assert client.post(f"/manage/models/annotator/{second.id}/remove/").status_code == 302
    chosen = registry.annotator_for("depth")
    assert chosen is not None and chosen.id == first.id
    event = AuditEvent.objects.get(action="model.remove", target=f"annotator:{second.id}")
    assert event.details == {"name": "depth-anything", "kind": "depth"}
    assert client.delete(f"/api/v1/admin/annotators/{pose.id}").status_code == 204
    assert AuditEvent.objects.filter(action="model.remove", target=f"annotator:{pose.id}").count() == 1
    assert client.delete(f"/api/v1/admin/annotators/{pose.id}").status_code == 404
    assert library.available_preprocessors() == [*WEIGHTLESS, "depth"]
    library.do_remove(team["root"], "annotator", first.id)
    assert library.available_preprocessors() == WEIGHTLESS
    assert registry.annotator_for("depth") is None
    assert installed_files(models_dir) == []
    assert library.annotator_missing("depth") == (
        "No depth annotator is installed: an admin can install one under Manage → Models."
    )


def test_admins_install_annotators_from_the_page_and_the_api(team, models_dir, tmp_path, client):
    source = build_vitpose(tmp_path / "incoming" / "vitpose")
    client.force_login(team["bob"])
    assert client.get("/api/v1/admin/annotators").status_code == 404
    body = {"path": str(source)}
    assert client.post("/api/v1/admin/annotators", body, content_type="application/json").status_code == 404
    assert client.post("/manage/models/", {"kind": "annotator", "path": str(source)}).status_code == 404
    assert registry.list_annotators() == []

    client.force_login(team["root"])
    answer = client.post(
        "/api/v1/admin/annotators", {**body, "name": "Pose"}, content_type="application/json"
    )
    assert answer.status_code == 201
    assert (answer.json()["id"], answer.json()["kind"], answer.json()["installed_by"]) == (
        "pose",
        "pose",
        "root",
    )
    refused = client.post(
        "/api/v1/admin/annotators", {"path": "relative/folder"}, content_type="application/json"
    )
    assert refused.status_code == 400
    assert "Enter an absolute path on the server." in refused.content.decode()
    no_such_user = client.post(
        "/api/v1/admin/annotators", {"path": "~nobody-here/x"}, content_type="application/json"
    )
    assert no_such_user.status_code == 400
    page = client.post("/manage/models/", {"kind": "annotator", "path": "~nobody-here/x"})
    assert page.status_code == 400
    assert "Enter an absolute path on the server." in page.content.decode()
    assert client.post("/api/v1/admin/annotators", {}, content_type="application/json").status_code == 400
    too_long = client.post("/manage/models/", {"kind": "annotator", "path": "/" + "a" * 300})
    assert too_long.status_code == 400
    assert "This is not a path the server can read." in too_long.content.decode()

    schema = client.get("/api/v1/openapi.json").json()
    assert {"get", "post"} <= set(schema["paths"]["/admin/annotators"])
    assert "delete" in schema["paths"]["/admin/annotators/{annotator_id}"]
    out = schema["components"]["schemas"]["AnnotatorOut"]["properties"]
    assert out["kind"]["enum"] == ["depth", "pose"]

    response = client.post("/manage/models/", {"kind": "annotator", "path": str(source), "name": "Pose 2"})
    assert response.status_code == 302
    assert [a.id for a in registry.list_annotators("pose")] == ["pose", "pose-2"]
    followed = client.get("/manage/models/").content.decode()
    assert "Annotator “Pose 2” (pose) installed." in followed
    bad = tmp_path / "incoming" / "pickled"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "dpt"}))
    (bad / "pytorch_model.bin").write_bytes(pickle.dumps({"weight": 1}))
    page = client.post("/manage/models/", {"kind": "annotator", "path": str(bad)})
    assert page.status_code == 400
    assert "which are never loaded" in page.content.decode()
    assert len(registry.list_annotators()) == 2


def test_the_commands_install_and_remove_an_annotator(team, models_dir, tmp_path, capsys):
    from django.core.management import CommandError, call_command

    source = build_vitpose(tmp_path / "incoming" / "vitpose-small")
    call_command("install_model", str(source), "--annotator", "--name", "Pose small")
    info = registry.get_annotator("pose-small")
    assert info is not None and info.kind == "pose"
    assert "Installed the pose annotator 'pose-small' (Pose small, " in capsys.readouterr().out
    assert AuditEvent.objects.get(target="annotator:pose-small").actor is None
    with pytest.raises(CommandError, match="leave out --lora"):
        call_command("install_model", str(source), "--annotator", "--lora")
    call_command("remove_model", "pose-small", "--annotator")
    assert "Removed annotator 'pose-small'" in capsys.readouterr().out
    assert registry.list_annotators() == []
    with pytest.raises(CommandError, match="No such installed annotator."):
        call_command("remove_model", "pose-small", "--annotator")


def test_an_annotator_that_no_longer_loads_fails_with_a_sentence_for_the_job(team, models_dir, tmp_path):
    from generation.engine.errors import GenerationError

    done = library.do_install_annotator(team["root"], str(build_dpt(tmp_path / "incoming" / "midas")))
    info = registry.get_annotator(done.id)
    assert info is not None
    (info.path / "model.safetensors").write_bytes(b"\0" * 64)  # damaged on disk after the install
    with pytest.raises(GenerationError) as failed:
        annotators.detect("depth", picture(), info, 64, 64)
    assert str(failed.value) == (
        "The depth annotator “midas” could not be loaded; an admin can reinstall it under Manage → Models."
    )
