"""The demo model's data and evaluation: the training data is a pure function of its seed, never shows a
held-out colour–shape pair, the picture reader is right on true scenes, and a random-weight model of the
demo architecture fails the small evaluation."""

from __future__ import annotations

from dataclasses import replace
from itertools import islice

import numpy as np
import pytest

from generation.engine import evaluation, scenes

# The small run's thresholds (8 prompts × 2 seeds = 16 pictures; `make eval-demo` runs 40 × 4 against
# evaluation.TARGETS). Low enough that the trained model passes with a margin, high enough that chance
# (1 in 9 colours, 9 positions, 6 shapes) is nowhere near.
SMALL_TARGETS = {"background": 0.75, "colour": 0.6, "position": 0.5, "shape": 0.4}


def test_training_batches_are_a_pure_function_of_seed_and_step():
    images, captions = scenes.training_batch(7, 3, 8, stream="diffusion")
    again, again_captions = scenes.training_batch(7, 3, 8, stream="diffusion")
    assert np.array_equal(images, again)
    assert captions == again_captions
    other, other_captions = scenes.training_batch(8, 3, 8, stream="diffusion")
    assert other_captions != captions
    assert images.shape == (8, 64, 64, 3)
    assert images.dtype == np.uint8


def test_the_training_sampler_never_draws_a_held_out_pair():
    seen: set[tuple[str, str]] = set()
    for scene in islice(scenes.training_scenes(0), 6000):
        for obj in scene.objects:
            seen.add((obj.colour, obj.shape))
    assert not seen & scenes.HELD_OUT_PAIRS
    assert seen == set(scenes.TRAIN_PAIRS)  # and everything else is drawn
    assert {(s.objects[0].colour, s.objects[0].shape) for s in scenes.evaluation_scenes(40)} == set(
        scenes.HELD_OUT_PAIRS
    )


def test_captions_paraphrase_and_parse_back_to_the_scene():
    single = [s for s in islice(scenes.training_scenes(1), 3000) if len(s.objects) == 1]
    assert len({s.caption for s in single}) > 0.9 * len(single)
    for scene in single + scenes.evaluation_scenes(40):
        expected, obj = scenes.parse(scene.caption), scene.objects[0]
        assert (expected.background, expected.colour, expected.shape, expected.position) == (
            scene.background,
            obj.colour,
            obj.shape,
            obj.position,
        ), scene.caption
        assert expected.size in (None, obj.size)
    assert scenes.parse(
        "a small yellow star in the top left corner on a black background"
    ) == scenes.Expected("black", "yellow", "star", "top left", "small")


def test_the_picture_reader_is_right_on_true_scenes():
    prompts = scenes.evaluation_scenes(120, seed=3)
    checks = evaluation.read_checks(
        [s.caption for s in prompts], [0] * len(prompts), [scenes.render(s) for s in prompts]
    )
    scores = evaluation.EvalResult(checks, []).scores()
    assert scores["background"] == scores["colour"] == scores["position"] == 1.0
    assert scores["shape"] >= 0.98


@pytest.mark.timeout(600)
def test_a_random_weight_model_of_the_same_architecture_fails_the_small_eval(tmp_path):
    from generation.engine.demo import build_random_model

    untrained = build_random_model(tmp_path / "random", seed=1)
    baseline = evaluation.evaluate(untrained, prompts=8, seeds=2)
    print(evaluation.table(baseline, SMALL_TARGETS))
    assert set(baseline.failures(SMALL_TARGETS)) == set(SMALL_TARGETS), evaluation.table(
        baseline, SMALL_TARGETS
    )


def test_the_training_loss_weights_latent_pixels_under_shapes():
    import random

    from generation.engine.training import object_masks

    scene = scenes.single_scene(random.Random(0), "red", "square", "large", "top left", "blue")
    corner = scenes.single_scene(random.Random(0), "yellow", "circle", "small", "bottom right", "black")
    masks = object_masks(np.stack([scenes.render(scene), scenes.render(corner)]), 16)
    assert masks.shape == (2, 1, 16, 16)
    for mask, s in zip(masks, (scene, corner), strict=True):
        obj = s.objects[0]
        assert mask[0, int(obj.cy) // 4, int(obj.cx) // 4] > 0.9  # the shape's centre is covered
        far_y, far_x = (15 - int(obj.cy) // 4), (15 - int(obj.cx) // 4)
        assert mask[0, far_y, far_x] == 0  # the opposite corner is background
        assert 0.005 < float(mask.mean()) < 0.3  # a shape, not the picture


def test_training_timesteps_favour_mid_noise_but_cover_the_whole_schedule():
    import torch

    from generation.engine.training import TrainingConfig, sample_timesteps

    config = TrainingConfig()
    drawn = sample_timesteps(20000, config, 1000, torch.Generator().manual_seed(0))
    assert int(drawn.min()) >= 0 and int(drawn.max()) <= 999
    mid = float(((drawn >= 100) & (drawn < 600)).float().mean())
    assert 0.6 < mid < 0.75  # uniform would give 0.5; mid_noise_share 0.5 of the batch is drawn there
    assert float((drawn >= 900).float().mean()) > 0.04  # the noisiest tenth is still trained on
    assert float((drawn < 100).float().mean()) > 0.04  # and the cleanest
    again = sample_timesteps(20000, config, 1000, torch.Generator().manual_seed(0))
    assert torch.equal(drawn, again)  # reproducible from the generator
    uniform = sample_timesteps(20000, replace(config, mid_noise_share=0.0), 1000, torch.Generator())
    assert 0.47 < float(((uniform >= 100) & (uniform < 600)).float().mean()) < 0.53


# --- the model shipped in generation/demo_model/ --


def test_the_bundled_model_is_the_default_and_a_plain_safetensors_diffusers_folder(tmp_path):
    import studio.settings as studio_settings  # the studio's own settings (the tests' hide the model)
    from generation.engine import registry
    from generation.engine.training import BUNDLED_MODEL_DIR

    assert studio_settings.STUDIO_BUNDLED_MODELS["demo"] == BUNDLED_MODEL_DIR
    assert studio_settings.STUDIO_DEFAULT_MODEL == "demo"
    files = [p for p in BUNDLED_MODEL_DIR.rglob("*") if p.is_file()]
    weights = [p for p in files if p.suffix == ".safetensors"]
    assert {p.parent.name for p in weights} == {"unet", "vae", "text_encoder"}
    assert not [p for p in files if p.suffix in (".bin", ".ckpt", ".pt", ".pth", ".pkl")]
    assert sum(p.stat().st_size for p in weights) <= 25 * 1024 * 1024
    # The registry serves it as "demo" when the models dir has none of that id, with its own fitted factors.
    info = registry.Registry(tmp_path / "models", studio_settings.STUDIO_BUNDLED_MODELS).models()["demo"]
    assert info.path == BUNDLED_MODEL_DIR
    assert info.family == "demo"
    assert info.latent_rgb_factors is not None and len(info.latent_rgb_factors) == 4
    card = (BUNDLED_MODEL_DIR / "MODEL_CARD.md").read_text()
    for heading in ("## Data", "## Architecture", "## Training", "## Evaluation", "## Speed"):
        assert heading in card


@pytest.mark.timeout(600)
def test_the_bundled_model_draws_what_is_asked_where_random_weights_cannot():
    from generation.engine.training import BUNDLED_MODEL_DIR

    trained = evaluation.evaluate(BUNDLED_MODEL_DIR, prompts=8, seeds=2)
    print(evaluation.table(trained, SMALL_TARGETS))
    # Every small target, shape included; a random-weight model of the same architecture misses all of them
    # (the test above).
    assert trained.failures(SMALL_TARGETS) == [], evaluation.table(trained, SMALL_TARGETS)
