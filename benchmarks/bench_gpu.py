"""The full-size path on one CUDA GPU (issue 16): training and dubbing at the paper's size, in minutes.

    make gpu-prep                 # here (CPU, network to PyPI): wheels the GPU machine lacks + a 10 s
                                  #   synthetic-world video with its landmarks file, all under .gpu/
    make gpu-check                # there: installs .gpu/wheels offline, then this script
    python benchmarks/bench_gpu.py --size tiny --device cpu --out DIR    # the same stages at tiny
                                  #   width on CPU in seconds (what ``make test`` runs, so it cannot rot)

Stages, each guarded by the time left of ``--budget`` (default 330 s) and by its own failure (a stage
that fails or runs out of memory is recorded as such and the next one runs):

1. ``gpu``: name, memory, and the dense bf16 matmul rate measured here (the utilisation ceiling);
2. ``train_ckpt`` / ``train_nockpt``: ``lipsync.train``'s own system, data and Trainer, composed from
   ``experiment=full`` with random-init full-size weights (no SVD files): batch 2, 16 frames, 320 x 320,
   bf16-mixed, gradient checkpointing on, then off. Seconds per step, peak memory, the step's FLOPs
   counted by ``torch.utils.flop_counter`` on a real step (forward + backward + recompute), utilisation
   against the measured peak, and the projection to the paper's 200k steps at global batch 16 on 8 GPUs;
3. ``dub_paper`` / ``dub_fast``: ``LipSyncPipeline`` at full size (random weights, bf16 autocast) dubs a
   10 s synthetic-world video from its landmarks file at the paper's settings, and at the fast preset
   when the options have one: seconds per output second by phase (faces, audio, VAE encode, UNet,
   VAE decode, paste, video encode), peak memory, and utilisation against the net's counted passes;
4. ``train_fsdp``: Lightning's FSDP strategy (``trainer=fsdp``) training steps on this one GPU;
5. ``train_compile`` / ``dub_compile``: the same with ``torch.compile`` of the net, where it compiles;
6. ``train_deepspeed``: DeepSpeed stage 2 (``trainer=deepspeed``) when its package imports.

Results go to ``OUT/gpu.json`` (rewritten after every stage, so a killed run keeps what it measured)
and ``OUT/gpu.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
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
            self.flops = 0
            self.flops_by_part: dict[str, float] = {}
            self._counter: FlopCounterMode | None = None
            self._t0 = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
            if batch_idx == 0:  # counted, not timed: the counter's dispatch hooks slow the step down
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


def train_stage(size: Size, device: str, peak: float, extra: list[str], compile_net: bool = False) -> dict:
    """Train ``size.steps + 2`` steps with the project's system, data and Trainer; time the last ones."""
    import torch
    from hydra.utils import instantiate

    reset_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = compose_train(size, extra, Path(tmp))
        t0 = time.perf_counter()
        with torch.device(device if device.startswith("cuda") else "cpu"):  # init on the GPU: seconds, not minutes
            system = instantiate(cfg.model)
        build_s = time.perf_counter() - t0
        if compile_net:
            system.denoiser.net.compile()
        datamodule = instantiate(cfg.data)
        timer = _step_timer(device)
        trainer = instantiate(cfg.trainer, callbacks=[timer], logger=False, enable_checkpointing=False,
                              max_steps=size.steps + 2, limit_val_batches=0, enable_progress_bar=False,
                              enable_model_summary=False, default_root_dir=tmp)
        trainer.fit(system, datamodule=datamodule)
        params = sum(p.numel() for p in system.denoiser.parameters()) / 1e6
        del system, trainer, datamodule
    timed = timer.times[2:] or timer.times[1:]
    step_s = sum(timed) / len(timed)
    tflop = timer.flops / 1e12
    return {
        "batch": size.batch, "frames": size.frames, "resolution": size.resolution,
        "precision": str(cfg.trainer.precision),
        "gradient_checkpointing": bool(cfg.model.net.net.get("gradient_checkpointing", False)),
        "compiled": compile_net, "strategy": _strategy_name(cfg),
        "net_params_millions": round(params, 1), "build_seconds": round(build_s, 1),
        "first_step_seconds": round(timer.times[0], 2), "warmup_step_seconds": round(timer.times[1], 2),
        "seconds_per_step": round(step_s, 3), "steps_timed": len(timed),
        "peak_memory_gib": round(peak_memory_gib(device), 1),
        "tflop_per_step": float(f"{tflop:.4g}"), "tflop_per_step_by_part": timer.flops_by_part,
        "utilisation": round(tflop / step_s / peak, 3) if peak else None,
        "paper_run_hours_8_gpus": round(_paper_hours(step_s, size.batch), 1),
    }


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


def pass_tflop(pipe: Any, size: Size, device: str) -> float:
    """FLOPs of one net pass for one 16-frame sample (counted on a real call, random inputs)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net, s = pipe.net, size.resolution
    with torch.no_grad():
        ref = net.encode_reference(torch.zeros(1, 3, s, s, device=device), torch.zeros(1, 1, s, s, device=device))
        z = pipe.vae.encode(torch.zeros(1, 16, 3, s, s, device=device))
        audio_dim = pipe.net.audio_proj.in_features
        cond = {"concat": z, "audio": torch.zeros(1, 16, 10, audio_dim, device=device), "id": ref}
        with FlopCounterMode(display=False) as counter, _autocast(device):
            net(torch.zeros_like(z), torch.zeros(1, device=device), cond)
    return counter.get_total_flops() / 1e12


def _autocast(device: str) -> Any:
    import torch

    if device.startswith("cuda"):
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def dub_stage(size: Size, device: str, peak: float, video: Path, preset: str | None = None,
              compile_net: bool = False) -> dict:
    """Dub ``video`` with its own audio at full size; seconds per output second by phase."""
    import torch

    from lipsync.data.faces import LandmarksFileFaces
    from lipsync.infer.pipeline import InferenceOptions, LipSyncPipeline, options_from_mapping

    reset_memory(device)
    t0 = time.perf_counter()
    with torch.device(device if device.startswith("cuda") else "cpu"):
        pipe = LipSyncPipeline.from_config(pipeline_config(size), faces=LandmarksFileFaces(),
                                           generated_faces=None, device=device)
    build_s = time.perf_counter() - t0
    one_pass = pass_tflop(pipe, size, device)
    if compile_net:
        pipe.net.compile()
    values: dict[str, Any] = {"progress": False, "detect_generated": False}
    if preset is not None:
        if "preset" not in InferenceOptions.__dataclass_fields__:
            return {"status": "skipped", "reason": f"InferenceOptions has no preset option (asked: {preset})"}
        values["preset"] = preset
    opts = options_from_mapping(values)
    clock = PhaseClock(device)
    pipe.net.forward = clock.wrap("unet", pipe.net.forward)
    pipe.vae.encode = clock.wrap("vae_encode", pipe.vae.encode)
    pipe.vae.decode = clock.wrap("vae_decode", pipe.vae.decode)
    pipe.audio_encoder.forward = clock.wrap("audio", pipe.audio_encoder.forward)
    functions = {"lipsync.infer.paste:paste_back": "paste", "lipsync.media:VideoWriter.write": "video_encode"}
    with tempfile.TemporaryDirectory() as tmp, patched_module_functions(clock, functions), _autocast(device):
        result = pipe(video, video, Path(tmp) / "dub.mp4", options=opts)
    out_s = result.num_frames / float(result.fps)
    phases = {"faces": result.timings.get("faces", 0.0), **clock.seconds}
    phases["other"] = max(result.seconds - sum(phases.values()), 0.0)
    net_tflop = one_pass * clock.samples.get("unet", 0) * 1.0  # each sample of a call is one 16-frame pass
    return {
        "preset": preset or "paper", "compiled": compile_net, "video_seconds": round(out_s, 2),
        "frames": result.num_frames, "build_seconds": round(build_s, 1),
        "seconds": round(result.seconds, 2), "seconds_per_output_second": round(result.seconds / out_s, 3),
        "phase_seconds_per_output_second": {k: round(v / out_s, 4) for k, v in phases.items()},
        "net_calls": clock.calls.get("unet", 0), "net_samples": clock.samples.get("unet", 0),
        "net_pass_tflop_16f": float(f"{one_pass:.4g}"),
        "net_tflop_per_output_second": float(f"{net_tflop / out_s:.4g}"),
        "net_utilisation": round(net_tflop / max(clock.seconds.get("unet", 1e-9), 1e-9) / peak, 3) if peak else None,
        "end_to_end_utilisation": round(net_tflop / result.seconds / peak, 3) if peak else None,
        "peak_memory_gib": round(peak_memory_gib(device), 1),
        "options": {k: getattr(opts, k) for k in ("num_steps", "segment_length", "overlap")},
    }


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
                row = {"status": "failed", "error": f"{type(err).__name__}: {str(err).splitlines()[0][:300] if str(err) else ''}",
                       "where": traceback.format_exc().strip().splitlines()[-3][:300]}
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
             "| stage | strategy | ckpt | compile | s/step | peak GiB | TFLOP/step | utilisation | 200k steps on 8 GPUs | status |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("train_ckpt", "train_nockpt", "train_fsdp", "train_compile", "train_deepspeed"):
        s = st.get(name)
        if not s:
            continue
        if s.get("status") != "ok":
            lines.append(f"| {name} | | | | | | | | | {s.get('status')}: {s.get('error') or s.get('reason', '')} |")
            continue
        lines.append(f"| {name} | {s['strategy']} | {'on' if s['gradient_checkpointing'] else 'off'} | "
                     f"{'on' if s['compiled'] else 'off'} | {s['seconds_per_step']:.3f} | {s['peak_memory_gib']} | "
                     f"{s['tflop_per_step']} | {_fmt(s['utilisation'], '.1%')} | "
                     f"{s['paper_run_hours_8_gpus']:.0f} h ({s['paper_run_hours_8_gpus'] / 24:.1f} days) | ok |")
    lines += ["", "TFLOP/step is counted on a real step by `torch.utils.flop_counter` (forward + backward + "
              "the recompute of gradient checkpointing; VAE encodes of the clip and the masked clip included). "
              "The 8-GPU projection assumes each GPU runs batch 2 at the measured step time (no all-reduce cost).",
              "", "## Dubbing a 10 s video at full size (random weights, bf16 autocast, landmarks file as faces)", "",
              "| stage | preset | compile | s per output s | faces | audio | VAE enc | UNet | VAE dec | paste | video enc | other | net TFLOP per output s | UNet utilisation | peak GiB | status |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("dub_paper", "dub_fast", "dub_compile"):
        s = st.get(name)
        if not s:
            continue
        if s.get("status") != "ok":
            lines.append(f"| {name} | | | | | | | | | | | | | | | {s.get('status')}: {s.get('error') or s.get('reason', '')} |")
            continue
        p = s["phase_seconds_per_output_second"]
        cells = " | ".join(f"{p.get(k, 0):.3f}" for k in
                           ("faces", "audio", "vae_encode", "unet", "vae_decode", "paste", "video_encode", "other"))
        lines.append(f"| {name} | {s['preset']} | {'on' if s['compiled'] else 'off'} | "
                     f"**{s['seconds_per_output_second']:.2f}** | {cells} | {s['net_tflop_per_output_second']} | "
                     f"{_fmt(s['net_utilisation'], '.1%')} | {s['peak_memory_gib']} | ok |")
    lines += ["", "Phases are seconds per second of output video (device synchronised around each call). "
              "Net TFLOP per output second = passes actually run x one 16-frame pass counted by the FLOP counter.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    writer = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="full")
    parser.add_argument("--device", default=None, help="cuda (the default: skipped without one) or cpu")
    parser.add_argument("--video", type=Path, default=ROOT / ".gpu" / "video" / "synth_00000.mp4",
                        help="synthetic-world video with its .landmarks.npz beside it (make gpu-prep)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--budget", type=float, default=330.0, help="seconds for all stages (default 330)")
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
    dubbing = {"dub_paper", "dub_fast", "dub_compile"} - set(args.skip)
    if dubbing and not args.video.exists():
        skip(f"no input video {in_checkout(args.video)} (`make gpu-prep` makes it)", __file__)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    size = SIZES[args.size]
    check = Check(args.out, args.budget, writer)
    check.results.update(size=size.name, environment=environment(device))
    check.results["peak_tflops"] = round(matmul_peak_tflops(device), 1)
    check.save()
    on_gpu = device.startswith("cuda")
    plan: list[tuple[str, Callable[[], dict], float]] = [
        ("train_ckpt", lambda: train_stage(size, device, check.results["peak_tflops"],
                                           ["model.net.net.gradient_checkpointing=true"]), 30),
        ("train_nockpt", lambda: train_stage(size, device, check.results["peak_tflops"],
                                             ["model.net.net.gradient_checkpointing=false"]), 30),
        ("dub_paper", lambda: dub_stage(size, device, check.results["peak_tflops"], args.video), 40),
        ("dub_fast", lambda: dub_stage(size, device, check.results["peak_tflops"], args.video, preset="fast"), 30),
        ("train_fsdp", lambda: _fsdp(size, device, check.results["peak_tflops"]), 40),
        ("train_compile", lambda: train_stage(size, device, check.results["peak_tflops"], [], compile_net=True), 60),
        ("dub_compile", lambda: dub_stage(size, device, check.results["peak_tflops"], args.video, compile_net=True), 60),
        ("train_deepspeed", lambda: _deepspeed(size, device, check.results["peak_tflops"]), 40),
    ]
    for name, fn, needs in plan:
        if name in args.skip:
            continue
        if not on_gpu and name in ("train_fsdp", "train_deepspeed"):
            check.stage(name, lambda: {"status": "skipped", "reason": "needs a CUDA device"})
            continue
        check.stage(name, fn, needs)
    print(report(check.results))
    failed = [n for n, s in check.results["stages"].items() if s["status"] == "failed"]
    return 1 if failed and not on_gpu else 0  # on CPU (make test) every stage must work


def _fsdp(size: Size, device: str, peak: float) -> dict:
    return train_stage(size, device, peak, ["trainer=fsdp", "trainer.devices=1"])


def _deepspeed(size: Size, device: str, peak: float) -> dict:
    try:
        import deepspeed  # noqa: F401
    except Exception as err:  # noqa: BLE001 - any import failure means the strategy is unavailable here
        return {"status": "skipped", "reason": f"deepspeed does not import here ({type(err).__name__})"}
    return train_stage(size, device, peak, ["trainer=deepspeed", "trainer.devices=1"])


if __name__ == "__main__":
    sys.exit(main())
