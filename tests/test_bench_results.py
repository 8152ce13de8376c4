"""bench_results/: every file named with its command in the index; the shared writer's stamp (issue 30)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync import benchresults, media
from lipsync.benchresults import ROOT, SKIPPED, Results

INDEX = ROOT / "bench_results" / "README.md"


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def index_rows() -> list[tuple[list[str], str]]:
    """(file names, command) per row of the index's table."""
    rows = []
    for line in INDEX.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("| `") else []
        if len(cells) == 2:
            rows.append((re.findall(r"`([^`]+)`", cells[0]), cells[1]))
    return rows


def test_the_index_names_every_result_file_once() -> None:
    named = [f for files, _ in index_rows() for f in files]
    assert len(named) == len(set(named)), "a file is named by two rows"
    present = {p.name for p in (ROOT / "bench_results").iterdir() if not p.name.startswith(".")}
    present.discard("README.md")
    assert present - set(named) == set(), "files in bench_results/ that no command of the index writes"


@pytest.mark.parametrize("files,command", index_rows(), ids=lambda v: v[0] if isinstance(v, list) else "")
def test_each_row_names_a_command_that_writes_its_files(files: list[str], command: str) -> None:
    """A benchmark script that exists and names the file; a publication that holds exactly these files;
    or a lipsync module given the file as its output path."""
    if "benchmarks/publish.py" in command:
        name = re.search(r"publish\.py (\w+)", command).group(1)
        assert set(_script("publish").PUBLICATIONS[name].files) == set(files)
        return
    script = re.search(r"benchmarks/(\w+)\.py", command)
    if script:
        source = (ROOT / "benchmarks" / f"{script.group(1)}.py").read_text()
        for f in files:
            stem = Path(f).stem.removesuffix("_frames")
            assert stem in source or stem in command, f"{script.group(0)} does not name {f}"
        return
    if "pytest" in command:
        assert all(f in (ROOT / "tests" / "test_app.py").read_text() for f in files)
        return
    module = re.search(r"python -m ([\w.]+)", command).group(1)
    assert importlib.util.find_spec(module) is not None
    assert all(f"bench_results/{f}" in command for f in files), "the command must write the file by name"


def test_json_and_markdown_carry_how_they_were_made(tmp_path: Path) -> None:
    results = Results(["benchmarks/bench_x.py", "--frames", "8"], started=time.monotonic() - 90)
    path = results.json(tmp_path / "x.json", {"a": 1, "b": [2.5]})
    data = json.loads(path.read_text())
    assert list(data) == ["written_by", "a", "b"] and data["a"] == 1 and data["b"] == [2.5]
    w = data["written_by"]
    assert w["command"] == "python benchmarks/bench_x.py --frames 8"
    assert 1.5 <= w["wall_minutes"] < 1.6
    assert w["torch"] == torch.__version__
    assert w["machine"]["cpu_cores"] == os.cpu_count() and w["machine"]["usable_cores"] >= 1
    assert (w["machine"]["gpu"] is None) == (not torch.cuda.is_available())
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
    head = git.stdout.strip()
    assert w["commit"] in (head, head + "+dirty")
    md = results.markdown(tmp_path / "x.md", "| a |\n|---|\n| 1 |\n\n").read_text()
    first, blank, *rest = md.split("\n")
    assert "`python benchmarks/bench_x.py --frames 8`" in first and head[:12] in first and blank == ""
    assert "\n".join(rest) == "| a |\n|---|\n| 1 |\n"
    titled = results.markdown(tmp_path / "t.md", "# Title\n\nbody\n").read_text().split("\n")
    # the stamp's wall minutes are read at each write: on a busy machine they may tick between the two
    assert titled[:2] == ["# Title", ""] and titled[3:] == ["", "body", ""]
    assert re.sub(r"\d+\.\d+ min", "M min", titled[2]) == re.sub(r"\d+\.\d+ min", "M min", first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.md", "x.json", "x.md"]  # no temporary left


def test_a_failed_write_keeps_the_previous_result(tmp_path: Path) -> None:
    results = Results(["benchmarks/bench_x.py"])
    path = results.json(tmp_path / "x.json", {"a": 1})
    before = path.read_text()

    def broken(_: dict) -> str:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        results.json(path, {"a": 2}, encode=broken)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_skip_says_why_in_one_line_and_exits_77(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        benchresults.skip("no CUDA device here", "benchmarks/bench_gpu.py")
    assert exit_.value.code == SKIPPED == 77
    assert capsys.readouterr().out == "skipped bench_gpu: no CUDA device here\n"


def test_bench_gpu_without_its_input_video_is_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        _script("bench_gpu").main(["--device", "cpu", "--video", str(tmp_path / "no.mp4"),
                                   "--out", str(tmp_path)])
    assert exit_.value.code == SKIPPED
    assert capsys.readouterr().out.startswith("skipped bench_gpu: no input video ")
    assert list(tmp_path.iterdir()) == []


def test_publish_copies_a_demo_run_under_its_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    publish = _script("publish")
    monkeypatch.setattr(publish, "RESULTS", tmp_path / "results")
    run = tmp_path / "demo"
    run.mkdir()
    report = {"variants": {"full": {"summary": {"sync_mean": 0.5}}}, "wall_minutes": 15.2}
    (run / "report.json").write_text(json.dumps(report))
    for name in ("openings.png", "loss_curves.png", "report.md"):  # what make demo writes beside report.json
        (run / name).write_bytes(b"\x89PNG not really")
    frames = np.zeros((10, 16, 48, 3), np.uint8) + np.arange(10, dtype=np.uint8)[:, None, None, None] * 20
    media.write_video(run / "side_by_side.mp4", frames, 25, crf=0)
    publish.publish("demo", run, Results(["benchmarks/publish.py", "demo"]))
    out = tmp_path / "results"
    copied = json.loads((out / "demo_report.json").read_text())
    assert copied.pop("written_by")["made_by"] == "make demo" and copied == report
    assert (out / "demo_openings.png").read_bytes() == b"\x89PNG not really"
    picture = _png(out / "demo_frames.png")
    assert picture.shape == (6 * 16, 48, 3)
    # frames 0, 2, 4, 5, 7, 9 of 10, evenly spaced
    assert np.abs(picture[::16, 0, 0].astype(int) - [0, 40, 80, 100, 140, 180]).max() <= 3
    with pytest.raises(ValueError, match="make demo"):
        publish.publish("bench_sync", run, Results(["benchmarks/publish.py", "bench_sync"]))


def _png(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def test_make_clean_keeps_results_and_phony_names_only_targets() -> None:
    text = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-zA-Z_-]+):", text, re.M))
    phony = re.search(r"^\.PHONY: (.+)$", text, re.M).group(1).split()
    assert set(phony) - targets == set()
    clean = re.search(r"^clean:.*\n((?:\t.*\n)+)", text, re.M).group(1)
    assert "rm -rf" in clean and "bench_results" not in clean


def test_paired_realface_differences_are_clip_by_clip() -> None:
    paired = _script("paired_realface")

    def metrics(lmd: list[float], sync: list[float]) -> dict:
        names = [f"c{i}.mp4" for i in range(len(lmd))]
        return {"videos": names, "per_clip": {
            "self/model": [{"clip": n, "lmd": v, "opening_r": 0.0, "ssim": 0.5, "psnr": 20.0}
                           for n, v in zip(names, lmd)],
            "cross/model": [{"clip": n, "sync": v, "leak": 0.0} for n, v in zip(names, sync)]}}

    a = metrics([0.10, 0.20, 0.30, 0.40], [0.0, 0.1, float("nan"), 0.3])
    b = metrics([0.09, 0.18, 0.27, 0.44], [0.2, 0.2, 0.5, 0.2])
    result = paired.compare(a, b)
    lmd = result["self/model:lmd"]
    assert lmd["diff"] == pytest.approx((-0.01 - 0.02 - 0.03 + 0.04) / 4)
    assert lmd["b_better"] == 3  # lower LMD is better: three clips improve, one gets worse
    assert lmd["se"] == pytest.approx(np.std([-0.01, -0.02, -0.03, 0.04], ddof=1) / 2)
    sync = result["cross/model:sync"]
    assert sync["clips"] == 3 and sync["diff"] == pytest.approx((0.2 + 0.1 - 0.1) / 3)  # the NaN clip is out
    assert sync["ci95"][0] <= sync["diff"] <= sync["ci95"][1]
    assert result["self/model:ssim"]["diff"] == 0.0 and result["self/model:ssim"]["b_better"] == 0
