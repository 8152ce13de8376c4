"""``python -m lipsync.app`` (also ``lipsync-app``, ``make app``): serve the dubbing page.

Binds to 127.0.0.1 (this machine only); serving other machines takes an explicit ``--host``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
from pathlib import Path

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging: warnings and up only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from lipsync.app.catalog import SHIPPED_MODELS  # noqa: E402
from lipsync.app.ui import AppSettings, build_app  # noqa: E402
from lipsync.cli import ArgumentParser, user_errors  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    p = ArgumentParser(prog="lipsync-app", description="Serve the lip-sync web page.")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; use 0.0.0.0 to serve other machines)")
    p.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    p.add_argument("--shipped", type=Path, action="append",
                   help="a shipped model, offered first; repeat for several, the first is chosen by default "
                        "(default models/showcase and models/realface of the checkout; '' leaves them out)")
    p.add_argument("--ckpt-dir", type=Path, default=Path("outputs"),
                   help="folder scanned for save_pretrained pipeline folders (default outputs/)")
    p.add_argument("--demo-dir", type=Path, default=Path("outputs/demo"),
                   help="folder with the demo's example clips, each a video with a same-stem audio file "
                        "(default outputs/demo/)")
    p.add_argument("--queue", type=int, default=8, help="jobs that may wait in the queue (default 8)")
    p.add_argument("--max-age", type=float, default=3600.0,
                   help="seconds uploads and results may stay on disk at most (default 3600)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="overrides of the CLI's conf/infer.yaml, e.g. device=cpu face_backend=insightface "
                        "options.fade=8 (the same pipeline as python -m lipsync.infer)")
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
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own health checks, one line per request
    given = SHIPPED_MODELS if args.shipped is None else args.shipped
    shipped = tuple(p for p in given if str(p) not in ("", ".")) or None
    settings = AppSettings(shipped=shipped, ckpt_dir=args.ckpt_dir, demo_dir=args.demo_dir, queue_size=args.queue,
                           max_age_s=args.max_age, overrides=tuple(args.overrides))
    with user_errors("lipsync-app"):
        app = build_app(settings)  # composes conf/infer.yaml: a bad override fails here, in one line
    print(f"lipsync app on http://{args.host}:{args.port} (checkpoints from {args.ckpt_dir.resolve()})")
    # `kill` (SIGTERM) stops the server like Ctrl-C does, so the job folders are removed on the way out.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    app.launch(host=args.host, port=args.port)


if __name__ == "__main__":
    main()
