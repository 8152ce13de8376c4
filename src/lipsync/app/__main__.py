"""``python -m lipsync.app`` (also ``lipsync-app``, ``make app``): serve the dubbing page.

Binds to 127.0.0.1 (this machine only); serving other machines takes an explicit ``--host``.
"""

from __future__ import annotations

import argparse
import logging
from functools import partial
from pathlib import Path

from lipsync.app.jobs import pipeline_from_pretrained
from lipsync.app.ui import AppSettings, build_app, launch


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = argparse.ArgumentParser(prog="python -m lipsync.app", description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; use 0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument("--ckpt-dir", type=Path, default=Path("outputs"),
                   help="folder scanned for save_pretrained pipeline folders (default outputs/)")
    p.add_argument("--demo-dir", type=Path, default=Path("outputs/demo"),
                   help="folder with the demo's example clips (video + same-stem audio; default outputs/demo/)")
    p.add_argument("--device", default="auto", help="where the model runs: auto (CUDA if present), cpu, cuda")
    p.add_argument("--queue", type=int, default=8, help="jobs that may wait in the queue (default 8)")
    p.add_argument("--max-age", type=float, default=3600.0,
                   help="seconds uploads and results may stay on disk at most (default 3600)")
    args = p.parse_args(argv)
    if args.queue < 1:
        p.error(f"--queue must be >= 1, got {args.queue}")
    if not 0 < args.port < 65536:
        p.error(f"--port must be in 1..65535, got {args.port}")
    return args


def main(argv: list[str] | None = None) -> None:
    """Build the page and serve it until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AppSettings(ckpt_dir=args.ckpt_dir, demo_dir=args.demo_dir, queue_size=args.queue,
                           max_age_s=args.max_age)
    print(f"lipsync app on http://{args.host}:{args.port} (checkpoints from {args.ckpt_dir.resolve()})")
    launch(build_app(settings, partial(pipeline_from_pretrained, device=args.device)), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
