"""Steps per second of the raw diffusers call, of the GPU fast path and of the worker, and images per second
by batch size, for SD 1.5-size and SDXL-size models.

``python bench/gpu_modes.py`` on a CUDA machine. For each family it builds a random-weight model in the full
published architecture from the component configs shipped in ``generation/engine/configs/<family>/`` (fp16,
saved as a safetensors diffusers folder), installs it through the model library into a temporary studio, and
measures, each path after a warm-up, alternating between paths so that clocks and heat treat them alike:

1. The fast path (steps/s of one image per pipeline call, text encoding and VAE decode included):

   * raw: the folder loaded by diffusers' ``from_pretrained`` in the family's precision, nothing else (recent
     diffusers already use SDPA attention);
   * fast: the pipeline as the worker loads it (``pipelines.load``: the family's precision, channels-last
     convolutions, SDPA attention, the VAE in fp32 where the family needs it);
   * compiled: the same with torch.compile of the denoiser (``STUDIO_TORCH_COMPILE=1``), warmed at the
     shape first (``pipelines.warm_shape``); ``--no-compile`` leaves it out (compiling SDXL with max-autotune
     takes many minutes), ``--cuda-graphs`` compiles with CUDA graphs (``reduce-overhead``).

2. Batching: images/s from one call of the fast pipeline making 1, 4 and 8 images with a generator each (as
   the worker makes a job's images), and the batching ratio: images/s at batch k over images/s at batch 1.

3. The worker against the raw call of its own pipeline: a queued txt2img job through
   ``generation.worker.execute_job`` (the Celery task's body: the step callback with progress, live previews
   and the cancel check, heartbeats, the PNG and its storage, the rows), first with latent-factor previews,
   then with a TAESD-size random tiny preview decoder installed. "loop" times only the pipeline call inside
   the job; "job" is the whole job.

``--cpu --tiny`` runs the same code on the CPU with the architectures shrunk to a few channels, to check
that the script works where there is no GPU (the numbers then mean little; nothing is compiled on the CPU).
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


Row = tuple[Any, ...]


@dataclass
class Results:
    fast_path: list[Row]
    batches: list[Row]
    worker: list[Row]


BATCHES = (1, 4, 8)


def measure(case: Case, args: argparse.Namespace, work: Path) -> Results:
    import torch

    from generation import library
    from generation.engine import pipelines, registry, runner

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
        f"\n{case.label}: {installed.id}, UNet {params_count / 1e6:,.0f} M parameters, {size}×{size}, "
        f"{args.steps} steps; fast path: {loaded.fast_path.describe()} "
        f"(built, installed and loaded in {time.perf_counter() - started:.0f} s)",
        flush=True,
    )
    del loaded  # (each part below takes it from the worker's cache, so that clearing the cache frees it)
    caller = Caller(args, model, size, device)
    rates, batches = fast_path_and_batches(caller, model, dtype)
    worker_rows = worker_overhead(caller, case, model, work)
    runner.cache().clear()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    compiled = compiled_rate(caller, model) if device.type == "cuda" and not args.no_compile else None
    one = batches[1]
    ratios = [(batches[b] or 0) / one if one else None for b in BATCHES[1:]]
    return Results(
        fast_path=[(case.label, rates["raw"], rates["fast"], compiled)],
        batches=[(case.label, *(batches[b] for b in BATCHES), *ratios)],
        worker=worker_rows,
    )


class Caller:
    """Times pipeline calls at the case's size and steps, with the bench's prompt."""

    PROMPT = "a lighthouse on a cliff at dusk, oil painting"

    def __init__(self, args: argparse.Namespace, model: Any, size: int, device: Any) -> None:
        self.args, self.model, self.size, self.device = args, model, size, device

    def sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def __call__(self, pipe: Any, batch: int = 1) -> float:
        """Seconds of one pipeline call making ``batch`` images, a generator each."""
        import torch

        self.sync()
        t0 = time.perf_counter()
        with torch.inference_mode():
            pipe(
                prompt=self.PROMPT,
                num_inference_steps=self.args.steps,
                guidance_scale=self.model.default_guidance,
                width=self.size,
                height=self.size,
                num_images_per_prompt=batch,
                generator=[torch.Generator("cpu").manual_seed(1 + i) for i in range(batch)],
                output_type="pil",
            )
        self.sync()
        return time.perf_counter() - t0

    def alternate(self, paths: dict[str, Any]) -> dict[str, float]:
        """Median steps/s of each pipeline, called in turn ``runs`` times after a warm-up of each."""
        for pipe in paths.values():
            self(pipe)
        seconds: dict[str, list[float]] = {name: [] for name in paths}
        for _ in range(self.args.runs):
            for name, pipe in paths.items():
                seconds[name].append(self(pipe))
        return {name: median_rate(self.args.steps, times) for name, times in seconds.items()}


def fast_path_and_batches(caller: Caller, model: Any, dtype: Any) -> tuple[dict[str, float], dict[int, Any]]:
    """Steps/s of diffusers as it comes against the worker's fast path; images/s of the fast path at each of
    ``BATCHES`` (None where the batch does not fit in memory)."""
    import torch
    from diffusers import DiffusionPipeline

    from generation.engine import pipelines, runner

    loaded = runner.cache().get(model)
    pipelines.set_scheduler(loaded, model.default_scheduler)
    raw = DiffusionPipeline.from_pretrained(
        str(model.path), dtype=dtype, local_files_only=True, use_safetensors=True
    )
    raw.scheduler = type(loaded.pipe.scheduler).from_config(loaded.pipe.scheduler.config)
    raw.set_progress_bar_config(disable=True)
    raw.to(caller.device)
    rates = caller.alternate({"raw": raw, "fast": loaded.pipe})
    del raw
    if caller.device.type == "cuda":
        torch.cuda.empty_cache()

    batches: dict[int, float | None] = {}
    for batch in BATCHES:
        try:
            caller(loaded.pipe, batch)  # warm-up
            batches[batch] = batch / statistics.median(
                caller(loaded.pipe, batch) for _ in range(caller.args.runs)
            )
        except torch.OutOfMemoryError:
            batches[batch] = None
            torch.cuda.empty_cache()
    return rates, batches


def worker_overhead(caller: Caller, case: Case, model: Any, work: Path) -> list[Row]:
    """Steps/s of a job through the worker against the raw call of its pipeline, with latent-factor
    previews, then with a tiny preview decoder installed."""
    from generation import library, services
    from generation.engine import pipelines, runner
    from generation.models import Job
    from generation.worker import execute_job
    from studio.models import Membership, Project, Role, User

    loaded = runner.cache().get(model)
    steps = caller.args.steps
    user = User.objects.filter(username="bench").first() or User.objects.create_user("bench", password=None)
    project = Project.objects.filter(slug="bench").first()
    if project is None:
        project = Project.objects.create(name="Bench", slug="bench", created_by=user)
        Membership.objects.create(project=project, user=user, role=Role.LEAD)
    body = {
        "prompt": Caller.PROMPT,
        "model": model.id,
        "width": caller.size,
        "height": caller.size,
        "steps": steps,
        "scheduler": model.default_scheduler,
        "guidance_scale": model.default_guidance,
        "seed": 1,
    }

    def raw() -> float:
        pipelines.set_scheduler(loaded, model.default_scheduler)
        return caller(loaded.pipe)

    def worker() -> tuple[float, float]:
        job = services.do_create_job(user, project, body)
        t0 = time.perf_counter()
        outcome = execute_job(str(job.id), "bench")
        total = time.perf_counter() - t0
        if outcome != "succeeded":
            raise SystemExit(f"job {job.id} {outcome}: {Job.objects.get(pk=job.id).error}")
        loop = Job.objects.get(pk=job.id).gpu_seconds
        return float(loop or total), total

    def alternate(label: str) -> Row:
        raw(), worker()  # warm-up
        raws, loops, totals = [], [], []
        for _ in range(caller.args.runs):
            raws.append(raw())
            loop, total = worker()
            loops.append(loop)
            totals.append(total)
        return (
            case.label,
            label,
            median_rate(steps, raws),
            median_rate(steps, loops),
            median_rate(steps, totals),
        )

    rows = [alternate("factors")]
    decoder_source = build_preview_decoder(work / f"taesd-{case.family}", tiny=caller.args.tiny)
    library.do_install_preview_decoder(None, str(decoder_source), case.family)
    rows.append(alternate("tiny decoder"))
    decoder = pipelines.preview_decoder(loaded)
    assert decoder is not None, "the preview decoder did not load"
    assert decoder.dtype == loaded.dtype
    return rows


def compiled_rate(caller: Caller, model: Any) -> float:
    """Steps/s of the fast path with torch.compile (``STUDIO_TORCH_COMPILE``; CUDA graphs with
    ``--cuda-graphs``), in a cache of its own, warmed at the shape first."""
    import torch
    from django.conf import settings

    from generation.engine import pipelines

    settings.STUDIO_TORCH_COMPILE, settings.STUDIO_CUDA_GRAPHS = True, caller.args.cuda_graphs
    cache = pipelines.PipelineCache()
    try:
        compiled = cache.get(model)
        pipelines.set_scheduler(compiled, model.default_scheduler)
        t0 = time.perf_counter()
        pipelines.warm_shape(compiled, caller.size, caller.size, 1)
        print(
            f"  compiled ({compiled.fast_path.compile_mode}) in {time.perf_counter() - t0:.0f} s", flush=True
        )
        return caller.alternate({"compiled": compiled.pipe})["compiled"]
    finally:
        settings.STUDIO_TORCH_COMPILE = settings.STUDIO_CUDA_GRAPHS = False
        cache.clear()
        torch._dynamo.reset()
        torch.cuda.empty_cache()


def number(value: float | None, width: int, digits: int = 2) -> str:
    return f"{value:{width}.{digits}f}" if value is not None else f"{'n/a':>{width}}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="measured runs of each path, after a warm-up")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--family", choices=[c.family for c in CASES], action="append")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (STUDIO_DEVICE=cpu)")
    parser.add_argument("--tiny", action="store_true", help="shrunk architectures, to check the script")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile measurement")
    parser.add_argument(
        "--cuda-graphs", action="store_true", help="compile with CUDA graphs (STUDIO_CUDA_GRAPHS=1)"
    )
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
        results = [
            measure(case, args, work) for case in CASES if not args.family or case.family in args.family
        ]
        print("\nThe fast path, steps/s (one image per call):")
        print(f"{'model':<12} {'raw':>8} {'fast':>8} {'compiled':>9} {'fast/raw':>9} {'compiled/raw':>13}")
        for result in results:
            for label, raw, fast, compiled in result.fast_path:
                print(
                    f"{label:<12} {raw:8.2f} {fast:8.2f} {number(compiled, 9)} {fast / raw:9.3f} "
                    f"{number(compiled / raw if compiled else None, 13, 3)}"
                )
        print("\nBatching, images/s from one call of the fast path (ratio: over batch 1):")
        print(f"{'model':<12} {'batch 1':>8} {'batch 4':>8} {'batch 8':>8} {'ratio 4':>8} {'ratio 8':>8}")
        for result in results:
            for label, one, four, eight, ratio4, ratio8 in result.batches:
                print(
                    f"{label:<12} {number(one, 8, 3)} {number(four, 8, 3)} {number(eight, 8, 3)} "
                    f"{number(ratio4, 8)} {number(ratio8, 8)}"
                )
        print("\nThe worker against the raw call of its own pipeline, steps/s:")
        print(
            f"{'model':<12} {'previews':<13} {'raw it/s':>9} {'loop it/s':>10} {'job it/s':>9} "
            f"{'loop/raw':>9} {'job/raw':>8}"
        )
        for result in results:
            for label, previews, raw, loop, job in result.worker:
                print(
                    f"{label:<12} {previews:<13} {raw:9.2f} {loop:10.2f} {job:9.2f} "
                    f"{loop / raw:9.3f} {job / raw:8.3f}"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
