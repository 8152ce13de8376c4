"""The full-size path on one CUDA GPU (issue 16): training and dubbing at the paper's size, in minutes.

    make gpu-prep                 # here (CPU, network to PyPI): wheels the GPU machine lacks + a 10 s
                                  #   synthetic-world video with its landmarks file, all under .gpu/
    make gpu-check                # there: installs .gpu/wheels offline, then this script
    python benchmarks/bench_gpu.py --size tiny --device cpu --out DIR    # the same stages at tiny
                                  #   width on CPU in seconds (what ``make test`` runs, so it cannot rot)

Stages, in this order (new information first), each guarded by the time left of ``--budget`` (default
450 s) and by its own failure (a stage that fails or runs out of memory is recorded as such, with the
root cause, and the next one runs):

1. ``gpu``: name, memory, and the dense bf16 matmul rate measured here (the utilisation ceiling);
2. ``train_nockpt`` / ``train_cached``: ``lipsync.train``'s own system, data and Trainer, composed from
   ``experiment=full`` with random-init full-size weights (no SVD files): batch 2, 16 frames, 320 x 320,
   bf16-mixed; then the same with the clips' VAE latents in the batch, as shards with prepare's cached
   latents give them (``data.cached_latents``), so the frozen VAE does not run. Seconds per step, peak
   memory, the step's FLOPs counted by ``torch.utils.flop_counter`` on a real step, utilisation against
   the measured peak, and the projection to the paper's 200k steps at global batch 16 on 8 GPUs;
3. ``profile_train``: ``torch.profiler`` over one training step (cached latents): the top kernels and
   their share, by kind (attention, GEMM, convolution, normalisation, other), kernels per step and how
   busy the device was (a launch-bound step shows many short kernels and idle time); the trace goes to
   ``OUT/gpu_trace_train.json.gz`` (git-ignored);
4. ``dub_paper`` / ``dub_fast`` / ``dub_student``: ``LipSyncPipeline`` at full size (random weights, bf16
   autocast) dubs a 10 s synthetic-world video from its landmarks file at the paper's settings, at the
   fast preset, and with the distilled student when ``--student`` names one: seconds per output second
   by phase (faces, audio, VAE encode, UNet, VAE decode, paste, video encode), peak memory, and
   utilisation against the net's counted passes;
5. ``profile_dub``: the profiler over one dubbing segment's model work (VAE encode, the paper's 15 guided
   net calls at 16 frames, VAE decode), the same table; trace ``OUT/gpu_trace_dub.json.gz``;
6. ``dub_compile``: ``torch.compile`` of the net's forward (compiled first, the phase clock outside it),
   then a short video dubbed twice: the first run pays the compilation, the second shows the compiled
   speed; graphs, graph breaks and recompilations (with dynamo's reasons, as ``TORCH_LOGS=recompiles``
   prints them) are recorded;
7. ``compile_settings``: one guided net call at the segment's fixed shape, eager against each compile
   setting (default, ``reduce-overhead`` = CUDA graphs) and against a CUDA graph of the eager net;
   compile seconds, ms per call, speed-up over eager;
8. ``train_compile``, ``train_deepspeed`` (ZeRO stage 2 on this one GPU, ``trainer=deepspeed``),
   ``train_channels_last`` (NHWC convolution weights), ``train_ckpt`` (gradient checkpointing) and
   ``train_fsdp``: the training stage with each, after cached latents.

Every training and dubbing row records the attention backend (``model.net.net.attention_backend``) and
the convolution layout it ran with. Results go to ``OUT/gpu.json`` (rewritten after every stage, so a
killed run keeps what it measured) and ``OUT/gpu.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import gzip
import json
import logging
import os
import re
import shutil
import platform
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout, skip
from lipsync.data.batch import LATENTS, MASKED_LATENTS

PAPER_STEPS, PAPER_GLOBAL_BATCH, PAPER_GPUS = 200_000, 16, 8


# --- sizes ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Size:
    """What one run of the check trains and dubs."""

    name: str
    train_overrides: tuple[str, ...]
    batch: int
    frames: int
    resolution: int
    steps: int  # timed training steps (after one FLOP-counted and one warm-up step)
    video_seconds: float


SIZES = {
    # The paper's setting (SPEC section 5) on random-init weights: experiment=full without SVD files.
    "full": Size("full", ("experiment=full", "model.pretrained=null", "data=random", "data.size=320",
                          "data.num_frames=16", "data.batch_size=2", "data.num_workers=4", "trainer=gpu"),
                 batch=2, frames=16, resolution=320, steps=5, video_seconds=10.0),
    # The same stages at tiny width on CPU (make test): experiment=tiny at 32 px, 4 frames.
    "tiny": Size("tiny", ("experiment=tiny", "data.size=32", "data.num_frames=4", "data.batch_size=1",
                          "data.num_workers=0", "trainer=cpu"),
                 batch=1, frames=4, resolution=32, steps=2, video_seconds=1.0),
}


# --- timing and devices -----------------------------------------------------------------------------
def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_memory(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_memory_gib(device: str) -> float:
    """Peak GPU memory allocated since the last reset (CUDA), else the process's peak RSS."""
    import resource

    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


class StageTimeout(Exception):
    """A stage ran past the check's remaining budget."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`StageTimeout` in the main thread after ``seconds`` (SIGALRM; no-op off the main thread)."""

    def fire(signum: int, frame: Any) -> None:
        raise StageTimeout(f"stopped after {seconds:.0f} s (the check's time budget)")

    if seconds <= 0:
        raise StageTimeout("no time left in the budget")
    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def matmul_peak_tflops(device: str, n: int = 8192, repeats: int = 10) -> float:
    """Dense bf16 matmul rate measured here (TFLOP/s): the utilisation ceiling of this device."""
    import torch

    if not device.startswith("cuda"):
        n, repeats = 512, 3
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e12


# --- profiling --------------------------------------------------------------------------------------
# Kernel kinds by name, first match wins: cuDNN/CUTLASS convolutions are "implicit GEMMs", so
# convolution comes before GEMM; attention before both (flash/fmha kernels contain "gemm" too).
KERNEL_KINDS = (
    ("attention", re.compile(r"flash|fmha|attention|sdpa|softmax", re.I)),
    ("convolution", re.compile(r"conv|fprop|dgrad|wgrad|implicit|winograd|im2col|col2im", re.I)),
    ("gemm", re.compile(r"gemm|matmul|nvjet|xmma|cutlass|cublas|mm\b|addmm|linear|bmm", re.I)),
    ("normalisation", re.compile(r"norm", re.I)),
)


def kernel_kind(name: str) -> str:
    """attention, convolution, gemm, normalisation or other (elementwise, copies, reductions)."""
    return next((kind for kind, pattern in KERNEL_KINDS if pattern.search(name)), "other")


def start_profiler(device: str) -> Any:
    """An entered ``torch.profiler.profile`` of the CPU ops and, on CUDA, the device's kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.startswith("cuda") else [])
    prof = profile(activities=activities)
    prof.__enter__()
    return prof


def kernel_table(prof: Any, device: str, wall_seconds: float, trace: Path | None, top: int = 12) -> dict:
    """The profiled region's top kernels (CUDA kernels on a GPU, the CPU's ops elsewhere) and their share.

    ``device_busy`` = kernel time / wall time: well under 1 with many kernels of a few microseconds is a
    launch-bound loop (what CUDA graphs or a compiled, fused graph remove).
    """
    from torch.autograd import DeviceType

    on_gpu = device.startswith("cuda")
    rows = []
    for e in prof.key_averages():
        if on_gpu and e.device_type != DeviceType.CUDA:
            continue
        us = e.self_device_time_total if on_gpu else e.self_cpu_time_total
        if us > 0:
            rows.append((e.key, int(e.count), us / 1e6))
    total = sum(r[2] for r in rows) or 1e-12
    rows.sort(key=lambda r: -r[2])
    kinds: dict[str, float] = {}
    for name, _, sec in rows:
        kinds[kernel_kind(name)] = kinds.get(kernel_kind(name), 0.0) + sec / total
    calls = sum(r[1] for r in rows)
    out = {
        "profiled_wall_seconds": round(wall_seconds, 4), "kernel_seconds": round(total, 4),
        "kernels": calls, "mean_kernel_us": round(total / max(calls, 1) * 1e6, 1),
        "device_busy": round(total / wall_seconds, 3) if wall_seconds > 0 else None,
        "share_by_kind": {k: round(v, 3) for k, v in sorted(kinds.items(), key=lambda kv: -kv[1])},
        "attention_kernels": sorted({n[:90] for n, _, _ in rows if kernel_kind(n) == "attention"})[:6],
        "top": [{"kernel": n[:120], "kind": kernel_kind(n), "calls": c, "ms": round(sec * 1e3, 3),
                 "share": round(sec / total, 4)} for n, c, sec in rows[:top]],
    }
    if trace is not None:
        out["trace"] = in_checkout(write_trace(prof, trace))
    return out


def write_trace(prof: Any, path: Path) -> Path:
    """The Chrome/Perfetto trace of ``prof``, gzipped to ``path`` (``*.json.gz``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(raw))
        with raw.open("rb") as src, gzip.open(path, "wb", compresslevel=6) as dst:
            shutil.copyfileobj(src, dst)
    return path


# --- training ---------------------------------------------------------------------------------------
def compose_train(size: Size, extra: list[str], run_dir: Path) -> Any:
    """``lipsync.train``'s config for ``size`` plus ``extra`` overrides (Hydra compose, no app)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from lipsync.cli import config_dir

    GlobalHydra.instance().clear()
    replaced = {o.split("=", 1)[0] for o in extra}
    base = [o for o in size.train_overrides if o.split("=", 1)[0] not in replaced]
    overrides = [*base, *extra, "callbacks=none", f"paths.log_dir={run_dir}",
                 f"paths.output_dir={run_dir}", "seed=0"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    if cfg.model.get("pretrained") is None and str(cfg.model.vae.get("_target_", "")).endswith("load_svd_vae"):
        # No SVD folder: SVD's VAE at random init from its own config (what the pipeline presets describe).
        from omegaconf import OmegaConf, open_dict

        from lipsync.infer.presets import full_config

        with open_dict(cfg):
            cfg.model.vae = OmegaConf.create(full_config()["components"]["vae"])
    return cfg


def _step_timer(device: str) -> Any:
    """A Lightning callback: wall time of every optimizer step, FLOPs of the first one."""
    import lightning as L
    from torch.utils.flop_counter import FlopCounterMode

    class StepTimer(L.Callback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self.cached_latents = False  # the batch carried VAE latents (the VAE did not run)
            self.flops = 0
            self.flops_by_part: dict[str, float] = {}
            self._counter: FlopCounterMode | None = None
            self._t0 = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 0:  # counted, not timed: the counter's dispatch hooks slow the step down
                self.cached_latents = LATENTS in batch and MASKED_LATENTS in batch
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()
            sync(device)
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            sync(device)
            self.times.append(time.perf_counter() - self._t0)
            if self._counter is not None:
                self._counter.__exit__(None, None, None)
                self.flops = self._counter.get_total_flops()
                counts = self._counter.get_flop_counts()
                # top-level modules as the counter's module tracker names them (Denoiser, IDGuider, SVDVAE)
                self.flops_by_part = {k: float(f"{sum(v.values()) / 1e12:.4g}") for k, v in counts.items()
                                      if "." not in k and k != "Global"}
                self._counter = None

    return StepTimer()


def _profile_callback(device: str, step: int, trace: Path) -> Any:
    """A Lightning callback: ``torch.profiler`` over optimizer step ``step`` (:func:`kernel_table`)."""
    import lightning as L

    class StepProfiler(L.Callback):
        def __init__(self) -> None:
            self.summary: dict = {}
            self._prof: Any = None
            self._t0 = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == step:
                sync(device)
                self._prof = start_profiler(device)
                self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, idx: int) -> None:
            if self._prof is not None:
                sync(device)
                wall = time.perf_counter() - self._t0
                self._prof.__exit__(None, None, None)
                self.summary = kernel_table(self._prof, device, wall, trace)
                self._prof = None

    return StepProfiler()


def train_stage(size: Size, device: str, peak: float, extra: list[str], compile_backend: str | None = None,
                profile_to: Path | None = None) -> dict:
    """Train ``size.steps + 2`` steps with the project's system, data and Trainer; time the last ones.

    ``compile_backend`` compiles the net (``torch.compile``; "eager" traces with dynamo only, for CPU).
    ``profile_to`` profiles the third step instead (3 steps, no FLOP timing) and writes its trace there.
    """
    import torch
    from hydra.utils import instantiate

    reset_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(size, extra, Path(tmp))
        t0 = time.perf_counter()
        with torch.device(device if device.startswith("cuda") else "cpu"):  # init on the GPU: seconds, not minutes
            system = instantiate(cfg.model)
        build_s = time.perf_counter() - t0
        if compile_backend is not None:
            torch._dynamo.reset()
            system.denoiser.net.compile(backend=compile_backend)
        datamodule = instantiate(cfg.data)
        timer = _step_timer(device)
        callbacks = [timer]
        if profile_to is not None:
            callbacks.append(_profile_callback(device, 2, profile_to))
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=False, enable_checkpointing=False,
                              max_steps=3 if profile_to else size.steps + 2, limit_val_batches=0,
                              enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp)
        trainer.fit(system, datamodule=datamodule)
        params = sum(p.numel() for p in system.denoiser.parameters()) / 1e6
        net = system.denoiser.net
        layout = {"attention_backend": _jsonable(getattr(net, "attention_backend", "auto")),
                  "channels_last": bool(getattr(net, "channels_last", False)),
                  "cached_latents": timer.cached_latents}
        del system, trainer, datamodule, net
    if profile_to is not None:
        return {**layout, "batch": size.batch, "frames": size.frames, "resolution": size.resolution,
                **callbacks[1].summary}
    timed = timer.times[2:] or timer.times[1:]
    step_s = sum(timed) / len(timed)
    tflop = timer.flops / 1e12
    return {
        **layout, "batch": size.batch, "frames": size.frames, "resolution": size.resolution,
        "precision": str(cfg.trainer.precision),
        "gradient_checkpointing": bool(cfg.model.net.net.get("gradient_checkpointing", False)),
        "compiled": compile_backend is not None, "strategy": _strategy_name(cfg),
        "net_params_millions": round(params, 1), "build_seconds": round(build_s, 1),
        "first_step_seconds": round(timer.times[0], 2), "warmup_step_seconds": round(timer.times[1], 2),
        "seconds_per_step": round(step_s, 3), "steps_timed": len(timed),
        "peak_memory_gib": round(peak_memory_gib(device), 1),
        "tflop_per_step": float(f"{tflop:.4g}"), "tflop_per_step_by_part": timer.flops_by_part,
        "utilisation": round(tflop / step_s / peak, 3) if peak else None,
        "paper_run_hours_8_gpus": round(_paper_hours(step_s, size.batch), 1),
    }


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, (str, bool, int, float)) or value is None else [str(v) for v in value]


def _strategy_name(cfg: Any) -> str:
    strategy = cfg.trainer.get("strategy")
    return strategy.get("_target_", "?").rsplit(".", 1)[-1] if hasattr(strategy, "get") else str(strategy)


def _paper_hours(step_s: float, per_gpu_batch: int) -> float:
    """The paper's 200k steps at global batch 16 on 8 GPUs, each GPU at the measured per-step time.

    Per-GPU batch 2 on 8 GPUs is the paper's global 16; another measured batch is scaled linearly.
    Gradient all-reduce is not included (one GPU measured).
    """
    per_gpu_needed = PAPER_GLOBAL_BATCH / PAPER_GPUS
    return PAPER_STEPS * step_s * per_gpu_needed / per_gpu_batch / 3600


# --- dubbing ----------------------------------------------------------------------------------------
@dataclass
class PhaseClock:
    """Seconds spent inside wrapped callables, synchronising the device around each call."""

    device: str
    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            sync(self.device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.calls[name] = self.calls.get(name, 0) + 1
            if args and hasattr(args[0], "shape"):
                self.samples[name] = self.samples.get(name, 0) + int(args[0].shape[0])
            return out

        return timed


@contextlib.contextmanager
def patched_module_functions(clock: PhaseClock, names: dict[str, str]) -> Iterator[None]:
    """Time module-level functions/methods wherever the inference room imported them by name."""
    import importlib

    saved: list[tuple[Any, str, Any]] = []
    for dotted, phase in names.items():
        module_name, attr = dotted.rsplit(":", 1)
        owner: Any = importlib.import_module(module_name)
        obj_path = attr.split(".")
        for part in obj_path[:-1]:
            owner = getattr(owner, part)
        targets = [owner] + [m for n, m in list(sys.modules.items())
                             if n.startswith("lipsync.infer") and len(obj_path) == 1
                             and getattr(m, obj_path[-1], None) is getattr(owner, obj_path[-1])]
        for target in targets:
            original = getattr(target, obj_path[-1])
            saved.append((target, obj_path[-1], original))
            setattr(target, obj_path[-1], clock.wrap(phase, original))
    try:
        yield
    finally:
        for target, attr, original in reversed(saved):
            setattr(target, attr, original)


def pipeline_config(size: Size) -> dict:
    from lipsync.infer.presets import full_config, tiny_config

    return full_config() if size.name == "full" else tiny_config(resolution=size.resolution)


def build_pipe(size: Size, device: str, student: Path | None = None) -> Any:
    """The full-size pipeline at random weights (``student``: a saved pipeline folder instead)."""
    import torch

    from lipsync.data.faces import LandmarksFileFaces
    from lipsync.infer.pipeline import LipSyncPipeline

    kwargs = dict(faces=LandmarksFileFaces(), generated_faces=None, device=device)
    if student is not None:
        return LipSyncPipeline.from_pretrained(student, **kwargs)
    with torch.device(device if device.startswith("cuda") else "cpu"):
        return LipSyncPipeline.from_config(pipeline_config(size), **kwargs)


def segment_inputs(pipe: Any, size: Size, device: str, batch: int = 2) -> tuple[Any, Any, Any, dict]:
    """One 16-frame segment at ``size``: video (1, 16, 3, S, S) and the net's inputs for ``batch`` samples
    (2 = a guided step's conditional and unconditional passes, batched as the sampler does)."""
    import torch

    s = size.resolution
    g = torch.Generator(device="cpu").manual_seed(0)
    video = (torch.rand(1, 16, 3, s, s, generator=g) * 2 - 1).to(device)
    with torch.no_grad():
        first = video[:, 0].expand(batch, -1, -1, -1)
        ref = pipe.net.encode_reference(first, torch.zeros(batch, 1, s, s, device=device))
        z = pipe.vae.encode(video).expand(batch, -1, -1, -1, -1)
    audio_dim = pipe.net.audio_proj.in_features
    cond = {"concat": z, "audio": torch.randn(batch, 16, 10, audio_dim, generator=g).to(device), "id": ref}
    return video, torch.randn(z.shape, generator=g).to(device), torch.full((batch,), 0.5, device=device), cond


def pass_tflop(pipe: Any, size: Size, device: str) -> float:
    """FLOPs of one net pass for one 16-frame sample (counted on a real call, random inputs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    _, x, c_noise, cond = segment_inputs(pipe, size, device, batch=1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter, _autocast(device):
        pipe.net(x, c_noise, cond)
    return counter.get_total_flops() / 1e12


def _autocast(device: str, cache: bool = True) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache)
    return contextlib.nullcontext()


def dub_stage(size: Size, device: str, peak: float, video: Path, preset: str | None = None,
              student: Path | None = None) -> dict:
    """Dub ``video`` with its own audio at full size; seconds per output second by phase."""
    import time as _time

    from lipsync.infer.pipeline import InferenceOptions

    if preset is not None and "preset" not in InferenceOptions.__dataclass_fields__:
        return {"status": "skipped", "reason": f"InferenceOptions has no preset option (asked: {preset})"}
    reset_memory(device)
    t0 = _time.perf_counter()
    pipe = build_pipe(size, device, student)
    build_s = _time.perf_counter() - t0
    return {"student": in_checkout(student) if student else None, "build_seconds": round(build_s, 1),
            **run_dub(pipe, size, device, peak, video, preset)}


def run_dub(pipe: Any, size: Size, device: str, peak: float, video: Path, preset: str | None = None,
            compiled: bool = False) -> dict:
    """One dub of ``video`` by ``pipe`` with the phase clock around its parts (outside any compiled code)."""
    from lipsync.infer.pipeline import options_from_mapping

    one_pass = pass_tflop(pipe, size, device)
    values: dict[str, Any] = {"progress": False, "detect_generated": False}
    if preset is not None:
        values["preset"] = preset
    opts = options_from_mapping(values)
    clock = PhaseClock(device)
    wrapped = ((pipe.net, "forward"), (pipe.vae, "encode"), (pipe.vae, "decode"),
               (pipe.audio_encoder, "forward"))
    saved = {(obj, name): obj.__dict__.get(name) for obj, name in wrapped}
    pipe.net.forward = clock.wrap("unet", pipe.net.forward)
    pipe.vae.encode = clock.wrap("vae_encode", pipe.vae.encode)
    pipe.vae.decode = clock.wrap("vae_decode", pipe.vae.decode)
    pipe.audio_encoder.forward = clock.wrap("audio", pipe.audio_encoder.forward)
    functions = {"lipsync.infer.paste:paste_back": "paste", "lipsync.media:VideoWriter.write": "video_encode"}
    try:
        with tempfile.TemporaryDirectory() as tmp, patched_module_functions(clock, functions), \
                _autocast(device):
            result = pipe(video, video, Path(tmp) / "dub.mp4", options=opts)
    finally:  # the next run wraps the same callables afresh
        for (obj, name), original in saved.items():
            if original is None:
                obj.__dict__.pop(name, None)
            else:
                setattr(obj, name, original)
    out_s = result.num_frames / float(result.fps)
    phases = {"faces": result.timings.get("faces", 0.0), **clock.seconds}
    phases["other"] = max(result.seconds - sum(phases.values()), 0.0)
    net_tflop = one_pass * clock.samples.get("unet", 0) * 1.0  # each sample of a call is one 16-frame pass
    resolved = opts.resolved()
    return {
        "preset": preset or "paper", "compiled": compiled,
        "attention_backend": _jsonable(getattr(pipe.net, "attention_backend", "auto")),
        "channels_last": bool(getattr(pipe.net, "channels_last", False)),
        "video_seconds": round(out_s, 2), "frames": result.num_frames,
        "seconds": round(result.seconds, 2), "seconds_per_output_second": round(result.seconds / out_s, 3),
        "phase_seconds_per_output_second": {k: round(v / out_s, 4) for k, v in phases.items()},
        "net_calls": clock.calls.get("unet", 0), "net_samples": clock.samples.get("unet", 0),
        "net_pass_tflop_16f": float(f"{one_pass:.4g}"),
        "net_tflop_per_output_second": float(f"{net_tflop / out_s:.4g}"),
        "net_utilisation": round(net_tflop / max(clock.seconds.get("unet", 1e-9), 1e-9) / peak, 3) if peak else None,
        "end_to_end_utilisation": round(net_tflop / result.seconds / peak, 3) if peak else None,
        "peak_memory_gib": round(peak_memory_gib(device), 1),
        "options": {k: _jsonable(getattr(resolved, k)) for k in ("num_steps", "segment_length", "overlap")},
    }


def student_stage(size: Size, device: str, peak: float, video: Path, student: Path | None) -> dict:
    """The distilled student's dub, or one line saying there is none yet."""
    if student is None or not student.exists():
        where = f"{in_checkout(student)} does not exist" if student else "no --student given"
        return {"status": "skipped", "reason": f"no distilled student ({where}; none has been trained yet)"}
    return dub_stage(size, device, peak, video, preset="fast", student=student)


def profile_dub_stage(size: Size, device: str, out: Path) -> dict:
    """The profiler over one segment's model work: VAE encode, the paper's 15 guided net calls, VAE decode."""
    import torch

    from lipsync.sampling.presets import PRESETS

    reset_memory(device)
    pipe = build_pipe(size, device)
    video, x, c_noise, cond = segment_inputs(pipe, size, device)
    steps = PRESETS["paper"]["num_steps"]
    with torch.no_grad(), _autocast(device):
        pipe.net(x, c_noise, cond)  # warm-up: cuDNN's algorithm choice, allocator
        sync(device)
        prof, t0 = start_profiler(device), time.perf_counter()
        pipe.vae.encode(video)
        for _ in range(steps):
            pipe.net(x, c_noise, cond)
        pipe.vae.decode(x[:1])
        sync(device)
        wall = time.perf_counter() - t0
        prof.__exit__(None, None, None)
    return {"attention_backend": _jsonable(getattr(pipe.net, "attention_backend", "auto")),
            "net_calls": steps, "batch": 2, "frames": 16, "resolution": size.resolution,
            **kernel_table(prof, device, wall, out / "gpu_trace_dub.json.gz")}


# --- compilation ------------------------------------------------------------------------------------
@dataclass
class DynamoLog:
    """Dynamo's recompilations with their reasons (what ``TORCH_LOGS=recompiles`` prints), while entered."""

    messages: list[str] = field(default_factory=list)

    def __enter__(self) -> "DynamoLog":
        import torch._dynamo
        import torch._logging

        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        self._handler = _ListHandler(self.messages)
        logging.getLogger("torch").addHandler(self._handler)
        torch._logging.set_logs(recompiles=True)
        return self

    def __exit__(self, *exc: Any) -> None:
        import torch._logging

        torch._logging.set_logs()
        logging.getLogger("torch").removeHandler(self._handler)

    def summary(self) -> dict:
        """Graphs compiled, graph breaks (with their first reasons) and recompilations (with reasons)."""
        from torch._dynamo.utils import counters

        breaks = counters["graph_break"]
        recompiles = [m for m in self.messages if "ecompil" in m]
        return {"graphs": int(counters["stats"]["unique_graphs"]), "graph_breaks": int(sum(breaks.values())),
                "graph_break_reasons": [r.splitlines()[0][:200] for r in list(breaks)[:3]],
                "recompiles": len(recompiles),
                "recompile_reasons": [" ".join(m.split())[:300] for m in recompiles[:4]]}


class _ListHandler(logging.Handler):
    def __init__(self, messages: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.messages = messages

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def dub_compile_stage(size: Size, device: str, peak: float, video: Path, backend: str) -> dict:
    """Compile the net's forward, then dub ``video`` twice: compile cost, recompilations, compiled speed.

    The first GPU run compiled the module and then wrapped its forward with the phase clock, so dynamo
    traced the clock (device synchronisations, ``time.perf_counter``) into graph breaks, and its one dub
    paid every compilation. Here the clock wraps the compiled callable, and the second dub is timed warm.
    """
    import torch

    reset_memory(device)
    pipe = build_pipe(size, device)
    with DynamoLog() as log:
        pipe.net.forward = torch.compile(pipe.net.forward, backend=backend)
        first = run_dub(pipe, size, device, peak, video, compiled=True)
        warm = run_dub(pipe, size, device, peak, video, compiled=True)
    unet = lambda r: r["phase_seconds_per_output_second"]["unet"] * r["video_seconds"]  # noqa: E731
    return {**warm, "compile_backend": backend, "first_run_seconds_per_output_second":
            first["seconds_per_output_second"], "compile_seconds": round(unet(first) - unet(warm), 1),
            **log.summary()}


def compile_settings_stage(size: Size, device: str, backend: str, left: Callable[[], float],
                           needs: float) -> dict:
    """One guided net call at the segment's fixed shape: eager against each compile setting.

    Settings run while ``left()`` is at least ``needs`` seconds; the ones left out are named.
    """
    import torch

    reset_memory(device)
    pipe = build_pipe(size, device)
    _, x, c_noise, cond = segment_inputs(pipe, size, device)
    on_gpu = device.startswith("cuda")
    calls = 10 if on_gpu else 3
    settings: dict[str, Callable[[], Callable[[], Any]]] = {
        "eager": lambda: lambda: pipe.net(x, c_noise, cond),
        "compile": lambda: _compiled_call(pipe.net, (x, c_noise, cond), backend=backend),
    }
    if on_gpu:
        settings["compile_reduce_overhead"] = lambda: _compiled_call(
            pipe.net, (x, c_noise, cond), backend=backend, mode="reduce-overhead")
        settings["cuda_graph_eager"] = lambda: _cuda_graph_call(pipe.net, (x, c_noise, cond))
    rows: dict[str, dict] = {}
    for name, make in settings.items():
        if name != "eager" and left() < needs:
            rows[name] = {"status": "skipped", "reason": f"{left():.0f} s left, needs ~{needs:.0f} s"}
            continue
        with torch.no_grad(), _autocast(device, cache=False):
            t0 = time.perf_counter()
            call = make()
            call()
            sync(device)
            first = time.perf_counter() - t0
            call()
            sync(device)
            t0 = time.perf_counter()
            for _ in range(calls):
                call()
            sync(device)
        ms = (time.perf_counter() - t0) / calls * 1e3
        rows[name] = {"status": "ok", "first_call_seconds": round(first, 2), "ms_per_call": round(ms, 2)}
        torch._dynamo.reset()
    eager = rows["eager"]["ms_per_call"]
    for row in rows.values():
        if row["status"] == "ok":
            row["speedup_vs_eager"] = round(eager / row["ms_per_call"], 3)
    faster = [n for n, r in rows.items() if r.get("speedup_vs_eager", 0) > 1.02 and n != "eager"]
    return {"compile_backend": backend, "batch": 2, "frames": 16, "resolution": size.resolution,
            "calls_timed": calls, "settings": rows, "faster_than_eager": faster}


def _compiled_call(net: Any, args: tuple, **kwargs: Any) -> Callable[[], Any]:
    import torch

    torch._dynamo.reset()
    fn = torch.compile(net.forward, **kwargs)
    return lambda: fn(*args)


def _cuda_graph_call(net: Any, args: tuple) -> Callable[[], Any]:
    """The eager net captured once as a CUDA graph (static inputs), replayed per call: no launch overhead."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(2):  # warm-up outside the capture (cuDNN/cuBLAS workspaces)
            net(*args)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        net(*args)
    return graph.replay


# --- the check --------------------------------------------------------------------------------------
@dataclass
class Check:
    """Runs stages in order within a time budget and keeps the results file current."""

    out: Path
    budget: float
    writer: Results
    results: dict = field(default_factory=dict)
    start: float = field(default_factory=time.perf_counter)

    def left(self) -> float:
        return self.budget - (time.perf_counter() - self.start)

    def stage(self, name: str, fn: Callable[[], dict], needs: float = 0.0) -> dict:
        """Run ``fn`` if at least ``needs`` seconds are left; record ok/oom/failed/skipped and save."""
        import torch

        left = self.left()
        if left < needs:
            row: dict = {"status": "skipped", "reason": f"{left:.0f} s left of the budget, needs ~{needs:.0f} s"}
        else:
            t0 = time.perf_counter()
            print(f"[gpu-check] {name} ({left:.0f} s left) ...", flush=True)
            try:
                with deadline(left):
                    row = {"status": "ok", **fn()}
            except torch.cuda.OutOfMemoryError as err:
                row = {"status": "oom", "error": str(err).splitlines()[0][:300]}
            except StageTimeout as err:
                row = {"status": "timeout", "error": str(err)}
            except Exception as err:  # noqa: BLE001 - every stage reports its own failure and the next runs
                row = failure_row(err)
            row.setdefault("status", "ok")
            row["stage_seconds"] = round(time.perf_counter() - t0, 1)
            print(f"[gpu-check] {name}: {json.dumps(row)[:600]}", flush=True)
        self.results.setdefault("stages", {})[name] = row
        reset_memory(self.results.get("device", "cpu"))
        self.save()
        return row

    def save(self) -> None:
        self.results["wall_seconds"] = round(time.perf_counter() - self.start, 1)
        self.writer.json(self.out / "gpu.json", self.results)
        self.writer.markdown(self.out / "gpu.md", report(self.results))


def failure_row(err: BaseException) -> dict:
    """A failed stage: the error and its root cause (Hydra wraps a target's exception in an
    InstantiationException whose own message says little), and where the root cause was raised."""
    root = err
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__
    line = lambda e: f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:300]}"  # noqa: E731
    frames = traceback.extract_tb(root.__traceback__)
    row = {"status": "oom" if "OutOfMemoryError" in type(root).__name__ else "failed", "error": line(err)}
    if root is not err:
        row["root_cause"] = line(root)
    if frames:
        row["where"] = f"{in_checkout(frames[-1].filename)}:{frames[-1].lineno} in {frames[-1].name}"
    return row


def environment(device: str) -> dict:
    import torch

    env: dict[str, Any] = {"device": device, "python": platform.python_version(), "torch": torch.__version__,
                           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    for pkg in ("lightning", "diffusers", "hydra", "av", "whisper"):
        with contextlib.suppress(Exception):
            env[pkg] = __import__(pkg).__version__
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), sms=p.multi_processor_count)
    else:
        env.update(gpu=None, cpu_cores=os.cpu_count())
    return env


def _fmt(value: Any, spec: str = "") -> str:
    return "–" if value is None else format(value, spec)


TRAIN_STAGES = ("train_nockpt", "train_cached", "train_compile", "train_deepspeed", "train_channels_last",
                "train_ckpt", "train_fsdp")
DUB_STAGES = ("dub_paper", "dub_fast", "dub_student", "dub_compile")
PHASES = ("faces", "audio", "vae_encode", "unet", "vae_decode", "paste", "video_encode", "other")


def _why(s: dict) -> str:
    return s.get("root_cause") or s.get("error") or s.get("reason", "")


def _not_ok(name: str, s: dict, columns: int) -> str:
    return f"| {name} |{' |' * (columns - 2)} {s.get('status')}: {_why(s)} |"


def _on(flag: Any) -> str:
    return "on" if flag else "off"


def _training_table(st: dict) -> list[str]:
    lines = ["| stage | strategy | cached latents | ckpt | compile | attention | NHWC | s/step | peak GiB | "
             "TFLOP/step | utilisation | 200k steps on 8 GPUs | status |", "|---" * 13 + "|"]
    for name in TRAIN_STAGES:
        s = st.get(name)
        if s and s.get("status") != "ok":
            lines.append(_not_ok(name, s, 13))
        elif s:
            hours = s["paper_run_hours_8_gpus"]
            lines.append(f"| {name} | {s['strategy']} | {_on(s.get('cached_latents'))} | "
                         f"{_on(s['gradient_checkpointing'])} | {_on(s['compiled'])} | "
                         f"{s.get('attention_backend')} | {_on(s.get('channels_last'))} | "
                         f"{s['seconds_per_step']:.3f} | {s['peak_memory_gib']} | "
                         f"{s['tflop_per_step']} | {_fmt(s['utilisation'], '.1%')} | "
                         f"{hours:.0f} h ({hours / 24:.1f} days) | ok |")
    return lines


def _profile_section(name: str, s: dict | None) -> list[str]:
    if not s:
        return []
    if s.get("status") != "ok":
        return [f"`{name}`: {s.get('status')}: {_why(s)}", ""]
    kinds = ", ".join(f"{k} {v:.0%}" for k, v in s["share_by_kind"].items())
    lines = [f"`{name}`: {s['kernels']} kernels in {s['kernel_seconds']:.3f} s of kernel time over "
             f"{s['profiled_wall_seconds']:.3f} s wall (device busy {_fmt(s['device_busy'], '.0%')}, "
             f"mean kernel "
             f"{s['mean_kernel_us']} us); by kind: {kinds}. Attention kernels: "
             f"{', '.join(f'`{k}`' for k in s['attention_kernels']) or 'none'} (attention_backend "
             f"`{s.get('attention_backend')}`). Trace: `{s.get('trace', '–')}`.", "",
             "| kernel | kind | calls | ms | share |", "|---|---|---|---|---|"]
    lines += [f"| `{k['kernel'][:80]}` | {k['kind']} | {k['calls']} | {k['ms']:.2f} | {k['share']:.1%} |"
              for k in s["top"]]
    return lines + [""]


def _dubbing_table(st: dict) -> list[str]:
    lines = ["| stage | preset | compile | s per output s | " + " | ".join(PHASES).replace("_", " ")
             + " | net TFLOP per output s | UNet utilisation | peak GiB | status |", "|---" * 16 + "|"]
    for name in DUB_STAGES:
        s = st.get(name)
        if s and s.get("status") != "ok":
            lines.append(_not_ok(name, s, 16))
        elif s:
            p = s["phase_seconds_per_output_second"]
            cells = " | ".join(f"{p.get(k, 0):.3f}" for k in PHASES)
            lines.append(f"| {name} | {s['preset']} | {_on(s['compiled'])} | "
                         f"**{s['seconds_per_output_second']:.2f}** | {cells} | "
                         f"{s['net_tflop_per_output_second']} | {_fmt(s['net_utilisation'], '.1%')} | "
                         f"{s['peak_memory_gib']} | ok |")
    return lines


def _compile_section(st: dict) -> list[str]:
    lines = []
    s = st.get("dub_compile")
    if s and s.get("status") == "ok":
        lines += [f"`dub_compile` (backend `{s['compile_backend']}`, {s['video_seconds']} s video): "
                  f"first run {s['first_run_seconds_per_output_second']:.2f} s per output s, warm run "
                  f"{s['seconds_per_output_second']:.2f}; compilation inside the first run "
                  f"~{s['compile_seconds']} s; {s['graphs']} graphs, {s['graph_breaks']} graph breaks, "
                  f"{s['recompiles']} recompilations.", ""]
        lines += [f"- recompiled: {r}" for r in s["recompile_reasons"]]
        lines += [f"- graph break: {r}" for r in s["graph_break_reasons"]]
        lines += [""] if s["recompile_reasons"] or s["graph_break_reasons"] else []
    c = st.get("compile_settings")
    if c and c.get("status") == "ok":
        lines += [f"`compile_settings`: one guided net call (batch {c['batch']}, {c['frames']} frames, "
                  f"{c['resolution']} px), {c['calls_timed']} calls timed warm. Faster than eager: "
                  f"{', '.join(c['faster_than_eager']) or 'none'}.", "",
                  "| setting | first call s | ms per call | vs eager | status |", "|---|---|---|---|---|"]
        for name, row in c["settings"].items():
            lines.append(f"| {name} | {row.get('first_call_seconds', '–')} | "
                         f"{row.get('ms_per_call', '–')} | "
                         f"{_fmt(row.get('speedup_vs_eager'), '.2f')}x | "
                         f"{row['status']} {row.get('reason', '')} |")
        lines.append("")
    elif c:
        lines += [f"`compile_settings`: {c.get('status')}: {_why(c)}", ""]
    return lines


def report(r: dict) -> str:
    """``gpu.md``: the tables a lab reads before it spends GPU-days on this code."""
    env, st = r.get("environment", {}), r.get("stages", {})
    peak = r.get("peak_tflops")
    lines = ["# Full size on one GPU (`make gpu-check`, benchmarks/bench_gpu.py)", "",
             f"Device: **{env.get('gpu') or 'CPU'}** ({env.get('gpu_memory_gib', '–')} GiB), torch {env.get('torch')}, "
             f"Python {env.get('python')}, lightning {env.get('lightning', '–')}, diffusers {env.get('diffusers', '–')}; "
             f"size `{r.get('size')}`; {env.get('date', '')}. Measured dense bf16 matmul peak: "
             f"**{_fmt(peak, '.1f')} TFLOP/s** (utilisation below is against it). Wall time "
             f"{r.get('wall_seconds', 0):.0f} s.", "",
             "## Training (random-init weights, lipsync.train's system/data/Trainer)", "",
             *_training_table(st), "",
             "TFLOP/step is counted on a real step by `torch.utils.flop_counter` (forward + backward + "
             "the recompute of gradient checkpointing; the VAE encodes of the clip and the masked clip "
             "unless the batch carries cached latents). The 8-GPU projection assumes each GPU runs batch 2 "
             "at the measured step time (no all-reduce cost).", "",
             "## Where the time goes (torch.profiler)", "",
             *_profile_section("profile_train", st.get("profile_train")),
             *_profile_section("profile_dub", st.get("profile_dub")),
             "## Dubbing a 10 s video at full size (random weights, bf16 autocast, landmarks file as faces)",
             "",
             *_dubbing_table(st), "",
             "Phases are seconds per second of output video (device synchronised around each call). "
             "Net TFLOP per output second = passes actually run x one 16-frame pass counted by the FLOP "
             "counter.", "", "## Compilation", "", *_compile_section(st)]
    return "\n".join(lines)


NOCKPT, CACHED = "model.net.net.gradient_checkpointing=false", "data.cached_latents=true"
NEEDS_VIDEO = ("dub_paper", "dub_fast", "dub_student", "dub_compile")


Stage = tuple[str, Callable[[], dict], float]


def stages(args: argparse.Namespace, size: Size, device: str, check: Check) -> list[Stage]:
    """(name, run, seconds it needs at least), in the order they run: what the last GPU run could not say
    comes first; the stages it measured already (checkpointing, FSDP) come last."""
    peak = check.results["peak_tflops"]
    backend = args.compile_backend or ("inductor" if device.startswith("cuda") else "eager")
    short = args.short_video if args.short_video.exists() else args.video
    train = lambda *extra, **kw: (lambda: train_stage(size, device, peak, list(extra), **kw))  # noqa: E731
    return [
        ("train_nockpt", train(NOCKPT), 30),
        ("train_cached", train(NOCKPT, CACHED), 30),
        ("profile_train", train(NOCKPT, CACHED, profile_to=args.out / "gpu_trace_train.json.gz"), 30),
        ("dub_paper", lambda: dub_stage(size, device, peak, args.video), 40),
        ("dub_fast", lambda: dub_stage(size, device, peak, args.video, preset="fast"), 20),
        ("dub_student", lambda: student_stage(size, device, peak, args.video, args.student), 20),
        ("profile_dub", lambda: profile_dub_stage(size, device, args.out), 20),
        ("dub_compile", lambda: dub_compile_stage(size, device, peak, short, backend), 100),
        ("compile_settings", lambda: compile_settings_stage(size, device, backend, check.left,
                                                            80 if device.startswith("cuda") else 5), 60),
        ("train_compile", train(NOCKPT, CACHED, compile_backend=backend), 90),
        ("train_deepspeed", lambda: _deepspeed(size, device, peak), 40),
        ("train_channels_last", train(NOCKPT, CACHED, "model.net.net.channels_last=true"), 30),
        ("train_ckpt", train("model.net.net.gradient_checkpointing=true", CACHED), 30),
        ("train_fsdp", train("trainer=fsdp", "trainer.devices=1", CACHED), 40),
    ]


def main(argv: list[str] | None = None) -> int:
    writer = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--device", default=None, help="cuda (the default: skipped without one) or cpu")
    parser.add_argument("--video", type=Path, default=ROOT / ".gpu" / "video" / "synth_00000.mp4",
                        help="synthetic-world video with its .landmarks.npz beside it (make gpu-prep)")
    parser.add_argument("--short-video", type=Path, default=ROOT / ".gpu" / "video" / "synth_00001.mp4",
                        help="the shorter one dub_compile dubs twice (make gpu-prep; else --video)")
    parser.add_argument("--student", type=Path, default=ROOT / ".gpu" / "student",
                        help="a distilled student's saved pipeline folder, when one exists")
    parser.add_argument("--compile-backend", default=None,
                        help="torch.compile backend (default: inductor on CUDA, eager = dynamo only on CPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for all stages (default 450)")
    parser.add_argument("--skip", nargs="*", default=[], help="stage names to leave out")
    args = parser.parse_args(argv)

    import torch

    if args.device is None and not torch.cuda.is_available():
        skip("no CUDA device here (`make gpu-check` runs it on a GPU machine; --size tiny --device cpu runs "
             "it here)", __file__)
    device = args.device or "cuda"
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("bench_gpu: error: --device cuda but torch sees no CUDA device", file=sys.stderr)
        return 1
    if set(NEEDS_VIDEO) - set(args.skip) and not args.video.exists():
        skip(f"no input video {in_checkout(args.video)} (`make gpu-prep` makes it)", __file__)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    size = SIZES[args.size]
    check = Check(args.out, args.budget, writer)
    check.results.update(size=size.name, environment=environment(device))
    check.results["peak_tflops"] = round(matmul_peak_tflops(device), 1)
    check.save()
    on_gpu = device.startswith("cuda")
    for name, fn, needs in stages(args, size, device, check):
        if name in args.skip:
            continue
        if not on_gpu and name == "train_fsdp":
            fn = lambda: {"status": "skipped", "reason": "needs a CUDA device"}  # noqa: E731
        check.stage(name, fn, needs)
    print(report(check.results))
    failed = [n for n, s in check.results["stages"].items() if s["status"] == "failed"]
    return 1 if failed and not on_gpu else 0  # on CPU (make test) every stage must work


def _deepspeed(size: Size, device: str, peak: float) -> dict:
    """ZeRO stage 2 on this one GPU (``trainer=deepspeed``), or why it cannot run here."""
    overrides = ["trainer=deepspeed", "trainer.devices=1", NOCKPT, CACHED]
    with tempfile.TemporaryDirectory() as tmp:
        stage = compose_train(size, overrides, Path(tmp)).trainer.strategy.stage  # the config composes
    try:
        import deepspeed
    except Exception as err:  # noqa: BLE001 - any import failure means the strategy is unavailable here
        why = f"{type(err).__name__}: {err}"[:200]
        return {"status": "skipped",
                "reason": f"deepspeed does not import here ({why}; `make gpu-prep` carries it)"}
    if not device.startswith("cuda"):
        return {"status": "skipped",
                "reason": f"needs a CUDA device (trainer=deepspeed composes, ZeRO {stage})"}
    run = train_stage(size, device, peak, overrides)
    return {"deepspeed": deepspeed.__version__, "zero_stage": stage, **run}


if __name__ == "__main__":
    sys.exit(main())
