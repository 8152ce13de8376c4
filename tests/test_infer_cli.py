"""``python -m lipsync.infer`` as a user runs it: one good run, and every kind of bad input ending in one
clear line on stderr, a non-zero exit, no traceback and no output file (issue 5, "Bad input")."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lipsync.assets import asset_path, ensure_assets
from lipsync.cli import config_dir
from lipsync.media import probe, read_audio, read_frames, write_video, write_wav

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
DECISION = r"face\.mp4: shot 0 \(frames 0-\d+\): dubbing track 0 at x \d+-\d+, y \d+-\d+ \(face=largest\)"


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def files(tmp_path_factory, save_tiny_pipeline) -> dict[str, Path]:
    ensure_assets(names=["sample.wav", "carphone_pristine.mp4"])
    d = tmp_path_factory.mktemp("cli")
    fps = probe(asset_path("carphone_pristine.mp4")).fps
    speech, rate = read_audio(asset_path("sample.wav"), sample_rate=None, mono=False)
    torch.manual_seed(0)
    evil = d / "evil.ckpt"
    torch.save({"state_dict": {}, "x": _RunsCode(d / "pwned")}, evil)
    (d / "garbage.ckpt").write_bytes(os.urandom(2048))
    (d / "notes.mp4").write_text("this is not a video\n")
    (d / "empty.wav").write_bytes(b"")
    return {
        "dir": d,
        "video": write_video(d / "face.mp4", read_frames(asset_path("carphone_pristine.mp4"), 0, 16), fps),
        "audio": write_wav(d / "speech.wav", speech[:, 8 * rate : int(8.5 * rate)], rate),
        "ckpt": save_tiny_pipeline(d / "m", seed=None),
        "evil": evil,
        "garbage": d / "garbage.ckpt",
        "notes": d / "notes.mp4",
        "empty": d / "empty.wav",
    }


def infer(**args: object) -> subprocess.Popen:
    argv = [sys.executable, "-m", "lipsync.infer", *(f"{k}={v}" for k, v in args.items())]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_cli_config_dubs_a_video(files, tmp_path: Path, capsys, caplog) -> None:
    """conf/infer.yaml composed with command-line overrides and run in-process (the subprocess start-up
    is what the bad-input test below pays for); the face dubbed in each shot is one logged line, the
    written file the one printed line."""
    from hydra import compose, initialize_config_dir

    from lipsync.infer.__main__ import run

    out = tmp_path / "dubbed.mp4"
    overrides = [
        f"video={files['video']}",
        f"audio={files['audio']}",
        f"ckpt={files['ckpt']}",
        f"output={out}",
        "generated_faces=null",
        "options.num_steps=1",
        "options.progress=false",
    ]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("infer", overrides=overrides)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with caplog.at_level(logging.INFO, logger="lipsync"):
            assert run(cfg) == out
    finally:
        torch.set_num_threads(before)
    info = probe(out)
    assert (info.width, info.height, info.num_frames, info.audio_rate) == (176, 144, 15, 16000)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(out)), lines
    assert len(caplog.messages) == 1 and re.fullmatch(DECISION, caplog.messages[0]), caplog.messages


BAD = {
    "missing video": (dict(video="{dir}/nope.mp4"), "no such file"),
    "video without a video stream": (dict(video="{audio}"), "has no video stream"),
    "audio without an audio stream": (dict(audio="{video}"), "has no audio stream"),
    "non-media file": (dict(video="{notes}"), "not a readable media file"),
    "zero-length audio": (dict(audio="{empty}"), "file is empty"),
    "missing checkpoint": (dict(ckpt="{dir}/nope"), "no such file or folder"),
    "unreadable checkpoint": (dict(ckpt="{garbage}"), "not a readable PyTorch checkpoint"),
    "code-executing checkpoint": (dict(ckpt="{evil}"), "refused: unpickling it would call 'posix.system'"),
    "missing argument": (dict(video=None), "missing video="),
}


def test_bad_input_is_one_line_nonzero_exit_and_no_output(files) -> None:
    procs = {}
    for name, (override, _) in BAD.items():  # all at once: each is mostly interpreter start-up
        args = {
            "video": files["video"],
            "audio": files["audio"],
            "ckpt": files["ckpt"],
            "output": files["dir"] / f"{name.replace(' ', '_')}.mp4",
        }
        for k, v in override.items():
            if v is None:
                del args[k]
            else:
                args[k] = v.format(**{key: str(p) for key, p in files.items()})
        procs[name] = (infer(**args), args["output"])
    for name, (proc, output) in procs.items():
        _, stderr = proc.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert proc.returncode != 0, name
        assert len(lines) == 1 and lines[0].startswith("lipsync-infer: error: "), (name, stderr)
        assert BAD[name][1] in lines[0], (name, lines[0])
        assert "Traceback" not in stderr and not Path(output).exists(), name
    assert not (files["dir"] / "pwned").exists()  # the pickle's payload never ran
    assert not list(files["dir"].glob("*partial*"))


def test_a_disk_that_fills_up_mid_dub_leaves_no_output_and_one_line(files) -> None:
    """The output cannot be written past 4 kB (RLIMIT_FSIZE, as a full disk fails a write): the dub stops
    with one line naming the output, status 1, and neither the video nor its temporary file is left. The
    terminal holds nothing else but lipsync's own lines (face=speaker on a video without sound falls back
    to the largest face: a warning and the shot's decision), no MediaPipe or TensorFlow Lite log lines."""
    import resource

    output = files["dir"] / "full_disk.mp4"
    argv = [sys.executable, "-m", "lipsync.infer", f"video={files['video']}", f"audio={files['audio']}",
            f"ckpt={files['ckpt']}", f"output={output}", "generated_faces=null", "options.num_steps=1",
            "options.progress=false", "options.face=speaker"]
    limit = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))  # noqa: E731
    run = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300, preexec_fn=limit)
    assert run.returncode == 1
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 3, run.stderr
    assert lines[0] == (f"lipsync-infer: warning: {files['video']}: face=speaker: the source video has no "
                        "audio stream; every shot uses the largest face")
    assert re.fullmatch(r"lipsync-infer: warning: face\.mp4: shot 0 \(frames 0-14\): no usable soundtrack to "
                        r"find the speaker by; falling back to the largest face: dubbing track 0 at "
                        r"x \d+-\d+, y \d+-\d+", lines[1]), lines[1]
    assert lines[2] == (f"lipsync-infer: error: {output}: could not write the video (File too large); "
                        "nothing was written")
    assert not output.exists() and not list(files["dir"].glob(".full_disk*"))
