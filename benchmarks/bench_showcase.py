"""Score a trained model on the demo's held-out pairs, as ``make demo`` scores it (issue 18).

    python benchmarks/bench_showcase.py [--model models/showcase] [--preset fast] [--pairs N] [--seconds S]
                                        [--quality] [--guidance G] [--name showcase]

``--model`` is a pipeline folder or a training checkpoint (converted on the fly, e.g. a periodic
``step=*.ckpt`` of a run in progress). The demo's 4 held-out identities are rendered once (``conf/demo.yaml``:
same seeds, so the same videos as ``make demo``'s) into ``outputs/bench_showcase/heldout``; each is dubbed
with the next one's speech and scored on the output pixels: **sync** = corr(measured mouth opening, the
opening the driving speech asks for), **leak** = corr(measured opening, the source's own opening).
``--quality`` adds the self-reconstruction (each identity dubbed with its own speech): SSIM / PSNR inside
the mask at frame resolution and FID with the shipped Inception, next to the 16 and 32 px ceilings.
Results: ``bench_results/<name>.json``, ``.md`` and ``<name>_frames.png``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from lipsync.benchresults import RESULTS, ROOT, Results, in_checkout


def main(argv: list[str] | None = None) -> dict:
    results = Results([__file__, *(sys.argv[1:] if argv is None else argv)])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "showcase"))
    parser.add_argument("--preset", default="fast", choices=("paper", "fast"),
                        help="sampling (default fast: what make demo dubs with)")
    parser.add_argument("--pairs", type=int, default=None, help="the first N held-out pairs (default: all)")
    parser.add_argument("--seconds", type=float, default=None, help="the first S s of speech (default: all)")
    parser.add_argument("--quality", action="store_true", help="add self-reconstruction SSIM/PSNR/FID")
    parser.add_argument("--guidance", type=float, default=None, help="CFG scale (default: the model's recorded one)")
    parser.add_argument("--work", default=str(ROOT / "outputs" / "bench_showcase"))
    parser.add_argument("--name", default="showcase")
    args = parser.parse_args(argv)

    from lipsync.cli import configure_threads

    configure_threads()
    from hydra import compose, initialize_config_dir
    import torch

    from lipsync import demo
    from lipsync.infer.pipeline import options_from_mapping
    from lipsync.cli import config_dir
    from lipsync.infer.convert import convert
    from lipsync.synth.corpus import render_corpus

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("demo", overrides=[f"infer.preset={args.preset}", "infer.progress=false",
                                         f"quality.identities={args.pairs if args.pairs else 'null'}",
                                         f"quality.seconds={args.seconds if args.seconds else 'null'}"])
    work = Path(args.work)
    held = work / "heldout"
    c = cfg.corpus
    render_corpus(held, c.heldout_videos, c.seconds, c.size, seed=cfg.seed + 1000, workers=c.workers)

    model = Path(args.model)
    tmp = None
    if model.is_file():  # a training checkpoint: converted to a pipeline folder first
        tmp = tempfile.TemporaryDirectory()
        model = convert(model, Path(tmp.name) / "model", audio_encoder="packaged")
    t0 = time.perf_counter()
    pipe = demo.load_pipeline(model)
    recorded = pipe.guidance_scale(options_from_mapping(dict(cfg.infer)))
    guidance = recorded if args.guidance is None else args.guidance
    results = Path(tempfile.mkdtemp(prefix="bench_showcase_", dir=work))
    jobs = demo.pairs(held)[: args.pairs]
    done = demo.dub(cfg, pipe, jobs, results, guidance, args.seconds)
    scores = demo.score(done)
    report = {"model": in_checkout(Path(args.model)), "preset": args.preset, "guidance": guidance,
              "pairs": [asdict(s) for s in scores], "summary": demo.summarize(scores),
              "seconds": args.seconds, "resolution": int(pipe.crop.resolution)}
    if args.quality:
        quality = demo.build_quality(cfg, held)
        selfs = demo.dub(cfg, pipe, demo.own_audio_pairs(cfg, held), results / "self", guidance, args.seconds)
        report["quality"] = quality.of_videos({d.video: d.result for d in selfs}, pipe.crop, pipe.mask)
        report["ceilings"] = quality.ceilings(pipe.crop, pipe.mask)
    report.update(wall_s=round(time.perf_counter() - t0, 1), threads=torch.get_num_threads(),
                  load_average=[round(x, 2) for x in os.getloadavg()], results=in_checkout(results))
    report["frames_png"] = in_checkout(frames_picture(done[0], RESULTS / f"{args.name}_frames.png"))
    write(report, RESULTS, args.name, results)
    if tmp is not None:
        tmp.cleanup()
    return report


def frames_picture(job: tuple, path: Path, count: int = 6, scale: int = 2) -> Path:
    """Source (top) and result (bottom) of the first dubbed pair: ``count`` evenly spaced frames, the lower
    half of each frame (where the model paints) enlarged ``scale`` x with nearest-neighbour pixels."""
    import numpy as np
    from PIL import Image

    from lipsync import media

    source, _, _, result = job
    out = media.read_frames(result)
    src = media.read_frames(source, stop=len(out))
    picks = np.linspace(0, len(out) - 1, count).round().astype(int)
    h = src.shape[1]
    rows = [np.concatenate([frames[i][h // 3:] for i in picks], axis=1) for frames in (src, out)]
    grid = np.concatenate(rows, axis=0)
    image = Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST)
    with media.atomic_path(path) as tmp:
        image.save(tmp)
    return path


def write(report: dict, folder: Path, name: str, results: Results) -> None:
    results.json(folder / f"{name}.json", report)
    s = report["summary"]
    span = "whole clips" if report["seconds"] is None else f"first {report['seconds']} s"
    lines = [f"# {name}: `{report['model']}` on the demo's held-out pairs", "",
             f"Preset {report['preset']}, guidance {report['guidance']}, "
             f"{span}; "
             f"{report['wall_s']} s, load average {report['load_average']}.", "",
             "| video | driving speech | sync | leak | copy-input sync |", "|---|---|---|---|---|"]
    lines += [f"| {p['video']} | {p['audio']} | {p['sync']:.2f} | {p['leak']:.2f} | {p['copy_sync']:.2f} |"
              for p in report["pairs"]]
    lines += [f"| **mean ± sd** | | **{s['sync_mean']:.2f} ± {s['sync_std']:.2f}** | "
              f"**{s['leak_mean']:.2f} ± {s['leak_std']:.2f}** | {s['copy_sync_mean']:.2f} |"]
    if "quality" in report:
        lines += ["", "| self-reconstruction | SSIM in mask | PSNR in mask (dB) | FID |", "|---|---|---|---|"]
        rows = {"model": report["quality"], **{f"ceiling {r} px": q for r, q in report["ceilings"].items()}}
        for label, q in rows.items():
            lines.append(f"| {label} | {q['ssim']:.3f} | {q['psnr']:.2f} | {q.get('fid') or float('nan'):.1f} |")
    results.markdown(folder / f"{name}.md", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
