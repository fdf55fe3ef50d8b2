"""Steps per second of the worker against the raw diffusers call, for SD 1.5-size and SDXL-size models.

``python bench/gpu_modes.py`` on a CUDA machine. For each family it builds a random-weight model in the full
published architecture from the component configs shipped in ``generation/engine/configs/<family>/`` (fp16,
saved as a safetensors diffusers folder), installs it through the model library into a temporary studio, and
alternates, after a warm-up of each:

* raw: the pipeline's own ``__call__`` (the same loaded pipeline the worker uses), nothing else;
* worker: a queued txt2img job through ``generation.worker.execute_job`` (the Celery task's body): the step
  callback with progress, live previews and the cancel check, heartbeats, the PNG and its storage, the rows.

Then it installs a TAESD-size random tiny preview decoder for the family and measures the worker again, so
the cost of decoded previews shows too. It prints a table of median steps/s with the ratio worker/raw ("loop"
times only the pipeline call inside the worker; "job" is the whole job).

``--cpu --tiny`` runs the same code on the CPU with the architectures shrunk to a few channels, to check
that the script works where there is no GPU (the numbers then mean little).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CONFIGS_DIR = ROOT / "generation" / "engine" / "configs"

# The shipped architectures shrunk to a few channels (``--tiny``): the same component classes and layouts,
# with the text widths, cross-attention width and SDXL's added time embedding kept consistent.
TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 37,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "projection_dim": 32,
}
TINY_VAE = {"block_out_channels": [8, 8, 16, 16], "layers_per_block": 1, "norm_num_groups": 4}
TINY_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "sd1": {
        "unet": {
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "layers_per_block": 1,
            "cross_attention_dim": 32,
            "norm_num_groups": 8,
        },
        "vae": TINY_VAE,
        "text_encoder": TINY_TEXT,
    },
    "sdxl": {
        "unet": {
            "block_out_channels": [32, 64],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 1,
            "attention_head_dim": [2, 4],
            "transformer_layers_per_block": [1, 1],
            "cross_attention_dim": 64,  # the two text encoders' widths side by side
            "addition_time_embed_dim": 8,
            "projection_class_embeddings_input_dim": 6 * 8 + 32,
            "norm_num_groups": 8,
        },
        "vae": TINY_VAE,
        "text_encoder": TINY_TEXT,
        "text_encoder_2": TINY_TEXT,
    },
}


def build_random_folder(
    family: str, target: Path, *, device: Any, dtype: Any, tiny: bool = False, seed: int = 0
) -> Path:
    """A random-weight diffusers folder (safetensors) of ``family`` at ``target``: every component built from
    the shipped config (``from_config``, random initialisation on ``device``), cast to ``dtype``; the
    tokenizers from the shipped CLIP vocabulary. ``tiny`` shrinks the architecture (``TINY_OVERRIDES``)."""
    import diffusers
    import torch
    import transformers

    from generation.engine import pipelines

    config_dir = CONFIGS_DIR / family
    index = json.loads((config_dir / "model_index.json").read_text())
    tokenizers = json.loads((config_dir / "tokenizers.json").read_text())
    overrides = TINY_OVERRIDES[family] if tiny else {}
    torch.manual_seed(seed)
    components: dict[str, Any] = {}
    for name, spec in index.items():
        if name.startswith("_"):
            continue
        if not isinstance(spec, list):  # a pipeline option (requires_safety_checker, ...)
            components[name] = spec
            continue
        library, class_name = spec
        if library is None:
            components[name] = None
        elif name in tokenizers:
            components[name] = pipelines.clip_tokenizer(tokenizers[name])
        elif name == "scheduler":
            config = json.loads((config_dir / name / "scheduler_config.json").read_text())
            components[name] = getattr(diffusers, class_name).from_config(config)
        else:
            config = {
                **json.loads((config_dir / name / "config.json").read_text()),
                **overrides.get(name, {}),
            }
            with torch.device(device):
                if library == "transformers":
                    cls = getattr(transformers, class_name)
                    model = cls(cls.config_class.from_dict(config))
                else:
                    model = getattr(diffusers, class_name).from_config(config)
            components[name] = model.to(dtype=dtype).eval()
    pipe = getattr(diffusers, index["_class_name"])(**components)
    pipe.save_pretrained(str(target), safe_serialization=True)
    del pipe, components
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return target


def build_preview_decoder(target: Path, *, tiny: bool = False, seed: int = 0) -> Path:
    """A random-weight tiny decoder for 4-channel latents: TAESD's own size (``AutoencoderTiny``'s defaults),
    or a few channels with ``tiny``."""
    import torch
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    shrink: dict[str, Any] = (
        {"encoder_block_out_channels": (8,) * 4, "decoder_block_out_channels": (8,) * 4} if tiny else {}
    )
    decoder: Any = AutoencoderTiny(latent_channels=4, **shrink)
    decoder.save_pretrained(str(target), safe_serialization=True)
    return target


# --- the measurement --


@dataclass(frozen=True)
class Case:
    family: str
    size: int
    label: str


CASES = [Case("sd1", 512, "SD 1.5 size"), Case("sdxl", 1024, "SDXL size")]
# The families' smallest sizes, for the shrunk CPU check.
TINY_SIZES = {"sd1": 256, "sdxl": 512}


def setup_django(data_dir: Path) -> None:
    """A private studio in ``data_dir``: its SQLite database (migrated), media and models dir; no Redis (the
    in-process channel layer and cache, as a worker without a broker would have)."""
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        os.environ.pop(name, None)
    os.environ.update(
        STUDIO_ENV="embedded",
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_MODELS_DIR=str(data_dir / "models"),
        DJANGO_SETTINGS_MODULE="studio.settings",
        HF_HUB_OFFLINE="1",
    )
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def median_rate(steps: int, seconds: list[float]) -> float:
    return steps / statistics.median(seconds)


def measure(case: Case, args: argparse.Namespace, work: Path) -> list[tuple[str, str, float, float, float]]:
    import torch

    from generation import library, services
    from generation.engine import pipelines, registry, runner
    from generation.models import Job
    from generation.worker import execute_job
    from studio.models import Membership, Project, Role, User

    device, dtype = pipelines.choose_device()
    size = TINY_SIZES[case.family] if args.tiny else case.size
    started = time.perf_counter()
    source = build_random_folder(
        case.family, work / f"source-{case.family}", device=device, dtype=dtype, tiny=args.tiny
    )
    installed = library.do_install_model(None, str(source), name=f"Random {case.family}")
    shutil.rmtree(source)
    model = registry.get_model(installed.id)
    assert model is not None
    loaded = runner.cache().get(model)
    params_count = sum(p.numel() for p in loaded.pipe.unet.parameters())
    print(
        f"\n{case.label}: {installed.id}, UNet {params_count / 1e6:,.0f} M parameters, "
        f"{loaded.device} {str(loaded.dtype).removeprefix('torch.')}, {size}×{size}, {args.steps} steps "
        f"(built, installed and loaded in {time.perf_counter() - started:.0f} s)",
        flush=True,
    )

    user = User.objects.filter(username="bench").first() or User.objects.create_user("bench", password=None)
    project = Project.objects.filter(slug="bench").first()
    if project is None:
        project = Project.objects.create(name="Bench", slug="bench", created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.LEAD)
    body = {
        "prompt": "a lighthouse on a cliff at dusk, oil painting",
        "model": model.id,
        "width": size,
        "height": size,
        "steps": args.steps,
        "scheduler": model.default_scheduler,
        "guidance_scale": model.default_guidance,
        "seed": 1,
    }

    def sync() -> None:
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()

    def raw() -> float:
        pipelines.set_scheduler(loaded, model.default_scheduler)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            loaded.pipe(
                prompt=body["prompt"],
                num_inference_steps=args.steps,
                guidance_scale=model.default_guidance,
                width=size,
                height=size,
                generator=[torch.Generator("cpu").manual_seed(1)],
                output_type="pil",
            )
        sync()
        return time.perf_counter() - t0

    def worker() -> tuple[float, float]:
        job = services.do_create_job(user, project, body)
        t0 = time.perf_counter()
        outcome = execute_job(str(job.id), "bench")
        total = time.perf_counter() - t0
        if outcome != "succeeded":
            raise SystemExit(f"job {job.id} {outcome}: {Job.objects.get(pk=job.id).error}")
        loop = Job.objects.get(pk=job.id).gpu_seconds
        return float(loop or total), total

    def alternate(label: str) -> tuple[str, str, float, float, float]:
        raw(), worker()  # warm-up
        raws, loops, totals = [], [], []
        for _ in range(args.runs):
            raws.append(raw())
            loop, total = worker()
            loops.append(loop)
            totals.append(total)
        return (
            case.label,
            label,
            median_rate(args.steps, raws),
            median_rate(args.steps, loops),
            median_rate(args.steps, totals),
        )

    rows = [alternate("factors")]
    decoder_source = build_preview_decoder(work / f"taesd-{case.family}", tiny=args.tiny)
    library.do_install_preview_decoder(None, str(decoder_source), case.family)
    rows.append(alternate("tiny decoder"))
    decoder = pipelines.preview_decoder(loaded)
    assert decoder is not None, "the preview decoder did not load"
    assert decoder.dtype == loaded.dtype

    runner.cache().clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each path, after a warm-up")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--family", choices=[c.family for c in CASES], action="append")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (STUDIO_DEVICE=cpu)")
    parser.add_argument("--tiny", action="store_true", help="shrunk architectures, to check the script")
    args = parser.parse_args()
    if args.cpu:
        os.environ["STUDIO_DEVICE"] = "cpu"
    # Previews as often as the publisher takes them, as in the studio's default configuration.
    os.environ.setdefault("STUDIO_PREVIEW_MIN_INTERVAL", "0")

    work = Path(tempfile.mkdtemp(prefix="studio-gpu-bench-"))
    try:
        setup_django(work / "studio")
        import torch

        from generation import services

        services.enqueue = lambda job_id, queue: None  # jobs run right here, in this process
        if not args.cpu and not torch.cuda.is_available():
            raise SystemExit("No CUDA device: run on a GPU machine, or check the script with --cpu --tiny.")
        device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.cpu else "CPU"
        print(f"{device}; torch {torch.__version__}; {args.runs} runs per path after a warm-up")
        rows = []
        for case in CASES:
            if args.family and case.family not in args.family:
                continue
            rows += measure(case, args, work)
        print()
        print(
            f"{'model':<12} {'previews':<13} {'raw it/s':>9} {'loop it/s':>10} {'job it/s':>9} "
            f"{'loop/raw':>9} {'job/raw':>8}"
        )
        for label, previews, raw, loop, job in rows:
            print(
                f"{label:<12} {previews:<13} {raw:9.2f} {loop:10.2f} {job:9.2f} "
                f"{loop / raw:9.3f} {job / raw:8.3f}"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
