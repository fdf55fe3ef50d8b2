"""The worker keeps the models it loaded warm, bounded by memory: on the GPU while their weights fit its
budget, then in host memory while they fit that budget, the least recently used leaving first. A model that
comes back from host memory is moved, not read from disk again.

The GPU tier is simulated: the cache is given a CUDA device and budgets, and the models are small stand-ins
whose weights are real torch tensors of known size and whose ``.to()`` records where they were sent; the log
says what happened, as an operator reads it."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from generation.engine import pipelines, registry
from generation.engine.pipelines import GPU, HOST, LoadedModel, PipelineCache, Placement
from generation.engine.registry import ModelInfo

MB = 2**20


class StandInPipeline:
    """A pipeline's shape as the cache sees it: torch modules among its components, and ``.to()``."""

    def __init__(self, size: int) -> None:
        weights = torch.nn.Module()
        weights.register_buffer("w", torch.zeros(size // 4))  # fp32: 4 bytes each
        self.components = {"unet": weights, "tokenizer": object(), "scheduler": None}
        self.device = "cpu"
        self.moves: list[str] = []

    def to(self, device, **kwargs):
        self.device = str(device)
        self.moves.append(self.device)
        return self


def model(model_id: str) -> ModelInfo:
    return ModelInfo(
        id=model_id,
        name=model_id,
        family="sd1",
        path=Path("/models") / model_id,
        default_width=512,
        default_height=512,
        default_steps=30,
        default_guidance=7.5,
        default_scheduler="Euler",
        min_size=256,
        max_size=1024,
        schedulers=["Euler"],
        modes=["txt2img"],
    )


class Disk:
    """Loads the stand-ins (sizes by model id) and counts the loads. The models named in ``too_big_to_move``
    load, but run out of GPU memory when sent there."""

    def __init__(self, too_big_to_move: tuple[str, ...] = (), **sizes: int) -> None:
        self.sizes = sizes
        self.too_big_to_move = too_big_to_move
        self.loads: list[str] = []

    def __call__(self, info: ModelInfo, device: torch.device) -> LoadedModel:
        self.loads.append(info.id)
        pipe = StandInPipeline(self.sizes[info.id])
        if info.id in self.too_big_to_move:

            def out_of_memory(device, **kwargs):
                raise torch.OutOfMemoryError("CUDA out of memory")

            pipe.to = out_of_memory  # type: ignore[method-assign]
        return LoadedModel(info, pipe, "0" * 64, device, torch.float16, None)


def cpu_cache(disk: Disk, host_budget: int) -> PipelineCache:
    return PipelineCache(device=torch.device("cpu"), host_budget=host_budget, loader=disk)


def gpu_cache(disk: Disk, gpu_budget: int, host_budget: int) -> PipelineCache:
    return PipelineCache(
        device=torch.device("cuda"), gpu_budget=gpu_budget, host_budget=host_budget, loader=disk
    )


class Log:
    def __init__(self, caplog) -> None:
        self.caplog = caplog

    def __contains__(self, line: str) -> bool:
        return line in self.caplog.messages

    def starting(self, prefix: str) -> list[str]:
        return [line for line in self.caplog.messages if line.startswith(prefix)]


@pytest.fixture
def log(caplog) -> Log:
    """The cache's log lines at INFO."""
    caplog.set_level(logging.INFO, logger="generation.engine.pipelines")
    return Log(caplog)


# --- one tier: host memory (a machine without a GPU) --


def test_three_models_past_the_budget_unload_the_least_recently_used(log):
    disk = Disk(a=100 * MB, b=100 * MB, c=100 * MB)
    cache = cpu_cache(disk, host_budget=250 * MB)
    cache.get(model("a"))
    cache.get(model("b"))
    cache.get(model("a"))  # a is now the most recently used
    cache.get(model("c"))

    assert cache.loaded() == ["a", "c"]
    assert "Unloading model b" in log
    assert cache.tiers() == {"a": Placement(HOST, 100 * MB), "c": Placement(HOST, 100 * MB)}
    cache.get(model("b"))  # gone: read from disk again, and a (least recently used now) makes room
    assert disk.loads == ["a", "b", "c", "b"]
    assert log.starting("Loading model") == [
        "Loading model a from /models/a",
        "Loading model b from /models/b",
        "Loading model c from /models/c",
        "Loading model b from /models/b",
    ]
    assert cache.loaded() == ["c", "b"]


def test_loaded_lists_the_models_least_recently_used_first():
    cache = cpu_cache(Disk(a=MB, b=MB, c=MB), host_budget=100 * MB)
    for model_id in ("a", "b", "c", "a", "b"):
        cache.get(model(model_id))
    assert cache.loaded() == ["c", "a", "b"]
    assert list(cache.tiers()) == ["c", "a", "b"]


def test_a_model_larger_than_the_budget_still_loads_alone(log):
    disk = Disk(small=100 * MB, huge=400 * MB)
    cache = cpu_cache(disk, host_budget=150 * MB)
    cache.get(model("small"))
    loaded = cache.get(model("huge"))
    assert loaded.info.id == "huge"
    assert cache.tiers() == {"huge": Placement(HOST, 400 * MB)}
    assert "Unloading model small" in log


def test_the_default_host_budget_is_half_the_memory_or_the_setting(settings):
    settings.STUDIO_HOST_CACHE_BYTES = 0
    assert PipelineCache(device=torch.device("cpu")).host_budget == pipelines.host_memory_bytes() // 2
    settings.STUDIO_HOST_CACHE_BYTES = 24 * 2**30
    assert PipelineCache(device=torch.device("cpu")).host_budget == 24 * 2**30


def test_the_host_memory_is_the_containers_limit_where_that_is_lower(tmp_path, monkeypatch):
    meminfo = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    limit = tmp_path / "memory.max"
    limit.write_text(f"{meminfo // 4}\n")
    monkeypatch.setattr(pipelines, "CGROUP_MEMORY_LIMITS", (str(limit),))
    assert pipelines.host_memory_bytes() == meminfo // 4
    limit.write_text("max\n")  # no limit
    assert pipelines.host_memory_bytes() == meminfo


# --- two tiers: the GPU, then host memory --


def test_a_model_pushed_off_the_gpu_stays_warm_in_host_memory_and_comes_back_without_a_load(log):
    disk = Disk(a=100 * MB, b=100 * MB, c=100 * MB)
    cache = gpu_cache(disk, gpu_budget=200 * MB, host_budget=200 * MB)
    a = cache.get(model("a"))
    cache.get(model("b"))
    assert a.pipe.device == "cuda"
    cache.get(model("c"))  # a, least recently used, makes room on the GPU

    assert cache.tiers() == {
        "a": Placement(HOST, 100 * MB),
        "b": Placement(GPU, 100 * MB),
        "c": Placement(GPU, 100 * MB),
    }
    assert a.pipe.device == "cpu"
    assert "Moving model a to host memory" in log

    again = cache.get(model("a"))
    assert again is a
    assert a.pipe.device == "cuda"
    assert disk.loads == ["a", "b", "c"]  # moved back, not read from disk
    assert "Moving model a back to cuda" in log
    assert "Moving model b to host memory" in log
    assert cache.tiers() == {
        "b": Placement(HOST, 100 * MB),
        "c": Placement(GPU, 100 * MB),
        "a": Placement(GPU, 100 * MB),
    }


def test_past_the_host_budget_the_least_recently_used_are_unloaded(log):
    disk = Disk(a=100 * MB, b=100 * MB, c=100 * MB, d=100 * MB, e=100 * MB)
    cache = gpu_cache(disk, gpu_budget=200 * MB, host_budget=200 * MB)
    for model_id in ("a", "b", "c", "d"):
        cache.get(model(model_id))
    assert cache.tiers() == {
        "a": Placement(HOST, 100 * MB),
        "b": Placement(HOST, 100 * MB),
        "c": Placement(GPU, 100 * MB),
        "d": Placement(GPU, 100 * MB),
    }
    cache.get(model("e"))  # c moves to host memory; a, the oldest there, is unloaded to make room
    assert cache.tiers() == {
        "b": Placement(HOST, 100 * MB),
        "c": Placement(HOST, 100 * MB),
        "d": Placement(GPU, 100 * MB),
        "e": Placement(GPU, 100 * MB),
    }
    assert "Unloading model a" in log
    assert cache.loaded() == ["b", "c", "d", "e"]


def test_a_model_larger_than_the_gpu_budget_runs_alone_there_and_skips_host_memory_when_too_big(log):
    disk = Disk(small=100 * MB, huge=400 * MB, next=100 * MB)
    cache = gpu_cache(disk, gpu_budget=150 * MB, host_budget=300 * MB)
    cache.get(model("small"))
    huge = cache.get(model("huge"))
    assert huge.pipe.device == "cuda"
    assert cache.tiers() == {"small": Placement(HOST, 100 * MB), "huge": Placement(GPU, 400 * MB)}

    cache.get(model("next"))  # huge leaves the GPU; it is larger than the host budget too: unloaded
    assert cache.tiers() == {"small": Placement(HOST, 100 * MB), "next": Placement(GPU, 100 * MB)}
    assert "Unloading model huge" in log
    assert "Moving model huge to host memory" not in log
    assert huge.pipe.moves == ["cuda"]


def test_a_model_that_fails_to_reach_the_gpu_is_not_kept(log):
    disk = Disk(a=100 * MB, b=100 * MB, too_big_to_move=("b",))
    cache = gpu_cache(disk, gpu_budget=1000 * MB, host_budget=1000 * MB)
    cache.get(model("a"))
    with pytest.raises(torch.OutOfMemoryError):
        cache.get(model("b"))
    assert cache.loaded() == ["a"]
    assert "Unloading model b" in log


# --- sizes --


def test_a_pipelines_size_is_its_weights_on_disk(demo_model_dir):
    """The demo model is saved in fp32 and loads in fp32 on the CPU: its weights in memory are its
    safetensors files, less their headers (and the text encoder's position ids, a buffer it does not save)."""
    info = registry.load_model_info(demo_model_dir, "demo")
    cache = PipelineCache(device=torch.device("cpu"))
    loaded = cache.get(info)
    size = pipelines.pipeline_bytes(loaded.pipe)
    on_disk = sum(p.stat().st_size for p in demo_model_dir.rglob("*.safetensors"))
    assert on_disk * 0.98 < size <= on_disk
    assert cache.tiers() == {"demo": Placement(HOST, size)}
    assert size == sum(
        t.numel() * t.element_size()
        for m in loaded.pipe.components.values()
        if isinstance(m, torch.nn.Module)
        for t in [*m.parameters(), *m.buffers()]
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", 7),
        ("1048576", 2**20),
        ("512M", 512 * 2**20),
        ("24G", 24 * 2**30),
        ("24GiB", 24 * 2**30),
        ("1.5T", 3 * 2**39),
    ],
)
def test_byte_settings_take_a_binary_suffix(monkeypatch, value, expected):
    from studio.settings import env_bytes

    monkeypatch.setenv("STUDIO_TEST_BYTES", value)
    assert env_bytes("STUDIO_TEST_BYTES", 7) == expected


# --- modules kept with a model (its jobs' ControlNets) --


class StandInAddon(torch.nn.Module):
    """A ControlNet's shape as the cache sees it: weights of known size, and ``.to()`` that records."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.register_buffer("w", torch.zeros(size // 4))
        self.moves: list[str] = []

    def to(self, device, **kwargs):
        self.moves.append(str(device))
        return self


def test_a_models_controlnets_count_with_it_move_with_it_and_leave_with_it(log):
    cache = gpu_cache(Disk(a=100 * MB, b=100 * MB), gpu_budget=250 * MB, host_budget=1000 * MB)
    cache.get(model("a"))
    cache.get(model("b"))
    net = StandInAddon(60 * MB)
    assert cache.addon(model("a"), "controlnet:x", lambda: net) is net
    # a grew to 160 MB on the GPU: b, the least recently used now, moves to host memory to make room.
    assert cache.tiers() == {"b": Placement(HOST, 100 * MB), "a": Placement(GPU, 160 * MB)}
    assert net.moves == ["cuda"]
    assert cache.addon(model("a"), "controlnet:x", lambda: pytest.fail("loaded twice")) is net
    cache.get(model("b"))  # back on the GPU: a and its ControlNet make room, together
    assert cache.tiers()["a"] == Placement(HOST, 160 * MB)
    assert net.moves[-1] == "cpu"
    cache.get(model("a"))
    assert net.moves[-1] == "cuda"

    # At most MAX_ADDONS per model: the least recently used leaves, and its bytes with it.
    extra = [StandInAddon(MB) for _ in range(pipelines.MAX_ADDONS)]
    for n, module in enumerate(extra):
        cache.addon(model("a"), f"controlnet:{n}", lambda module=module: module)
    assert "Unloading controlnet:x of model a" in log
    assert cache.tiers()["a"].bytes == 100 * MB + pipelines.MAX_ADDONS * MB
