"""`segcost sweep`: spec validation, expansion, both backends, resume after a kill, error rows, Pareto.

The sweeps here use `tiny_segnet` below (exports in ~0.1 s) so that the whole file runs in
well under a minute and a half on two loaded cores. Worker processes import it as
`tests.sweep.test_sweep:tiny_segnet` (the repository root is the sweep's search path).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pytest

from segcost.errors import InputError
from segcost.sweep import (
    NONDETERMINISTIC_COLUMNS,
    SweepOptions,
    SweepRow,
    expand,
    pareto_fronts,
    parse_spec,
    read_table,
    run_point,
    run_sweep,
)
from segcost.sweep.pareto import dominance_flags
from segcost.sweep.points import SeedMatch
from segcost.sweep.report import render_pareto_html, render_pareto_text
from segcost.sweep.run import PointResult

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.sweep.test_sweep:tiny_segnet"
FINGERPRINT = "test-fingerprint"  # pinned: concurrent edits of segcost's source must not invalidate the cache


def tiny_segnet(num_classes: int = 4, width_mult: float = 1.0):
    """Stem 3×3/2, depthwise 3×3/2, depthwise 5×5/1 (a TIDL finding), ×2 upsample, skip concat, 1×1 head.

    The concat needs the input side divisible by 4: other sizes fail to export.
    """
    import torch
    from torch import nn

    channels = max(8, int(16 * width_mult))

    class TinySegNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 2, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU())
            self.down = nn.Sequential(nn.Conv2d(channels, channels, 3, 2, 1, groups=channels, bias=False),
                                      nn.BatchNorm2d(channels), nn.ReLU(),
                                      nn.Conv2d(channels, channels, 5, 1, 2, groups=channels), nn.ReLU())
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.head = nn.Conv2d(2 * channels, num_classes, 1)

        def forward(self, x):
            skip = self.stem(x)
            return self.head(torch.cat([skip, self.up(self.down(skip))], 1))

    return TinySegNet().eval()


def broken_factory(num_classes: int = 4):
    raise RuntimeError("broken on purpose")


def crashing_factory(num_classes: int = 4):
    """Kills its worker process, as a segfault or the out-of-memory killer would."""
    os.kill(os.getpid(), signal.SIGKILL)


def tiny_spec(sizes=("32x32", "48x48", "64x64"), widths=(0.5, 1.0), classes=(4, 8), extra_models=(),
              measures=("macs", "params", "latency", "findings"), targets=("tda4vm", "am62a")) -> dict:
    return {"measures": list(measures),
            "axes": {"models": [{"model": FACTORY, "width_multipliers": list(widths)}, *extra_models],
                     "input_sizes": list(sizes), "num_classes": list(classes), "targets": list(targets)}}


def comparable(rows: list[dict]) -> list[dict]:
    return [{key: value for key, value in row.items() if key not in NONDETERMINISTIC_COLUMNS} for row in rows]


# ---------------------------------------------------------------- spec and points (no torch)

@pytest.mark.parametrize("document, message", [
    ({"axes": {"models": ["MobileNetV2+FPNLite"]}, "measure": ["macs"]}, "unknown key measure"),
    ({"measures": ["macs"]}, "missing [axes]"),
    ({"axes": {"models": ["MobileNetV2+FPNLit"]}}, "did you mean MobileNetV2+FPNLite"),
    ({"axes": {"models": ["MobileNetV2+FPNLite"], "input_sizes": ["512by512"]}}, "axes.input_sizes[0]"),
    ({"axes": {"models": ["MobileNetV2+FPNLite"], "targets": ["tda4vm"]}}, "only used by the \"latency\""),
    ({"measures": ["latency"], "axes": {"models": ["MobileNetV2+FPNLite"], "targets": ["tpu9"]}},
     "unknown target 'tpu9'"),
    ({"axes": {"models": ["pkg.mod:build"]}}, "no default input size"),
    ({"axes": {"models": ["pkg.mod:"]}}, "not a package.module:factory"),
    ({"axes": {"models": ["MobileNetV2+FPNLite"], "precisions": ["fp16"]}}, "not one of fp32, int8"),
    ({"measures": ["flops"], "axes": {"models": ["MobileNetV2+FPNLite"]}}, "unknown measure 'flops'"),
    ({"axes": {"models": ["MobileNetV2+FPNLite"], "num_classes": [0]}}, "axes.num_classes[0]"),
    ({"axes": {"models": ["MobileNetV2+FPNLite", "MobileNetV2+FPNLite"]}}, "repeats an earlier entry"),
    ({"axes": {"models": ["MobileNetV2+FPNLite"]}, "settings": {"calib_size": "8"}}, "settings.calib_size"),
])
def test_spec_errors_name_the_key(document, message):
    with pytest.raises(InputError, match="sweep.toml") as raised:
        parse_spec(document, "sweep.toml")
    assert message in str(raised.value)


def test_expansion_widths_seed_rows_and_hashes():
    spec = parse_spec({"measures": ["macs", "latency"], "axes": {
        "models": ["MobileNetV2+FPNLite", "MobileNetV2+UNetLite"], "input_sizes": ["512x512"],
        "width_multipliers": [1.0, 1.4], "num_classes": [32], "precisions": ["fp32", "int8"]}})
    expansion = expand(spec, FINGERPRINT)
    # FPNLite has width_mult: 2 widths x 2 precisions; UNetLite has none: 2 precisions, and a note.
    assert [(point.model, point.width_mult, point.precision) for point in expansion.points] == [
        ("MobileNetV2+FPNLite", 1.0, "fp32"), ("MobileNetV2+FPNLite", 1.0, "int8"),
        ("MobileNetV2+FPNLite", 1.4, "fp32"), ("MobileNetV2+FPNLite", 1.4, "int8"),
        ("MobileNetV2+UNetLite", None, "fp32"), ("MobileNetV2+UNetLite", None, "int8")]
    assert expansion.notes == ["MobileNetV2+UNetLite: its family has no width multiplier; swept at its own width only"]
    seeds = [point.seed for point in expansion.points]
    # width 1.4 builds the zoo's MobileNetV2-1.4+FPNLite; int8 points match QAT rows only (none at ADE20K32).
    assert seeds[0] == SeedMatch("ADE20K32", "MobileNetV2+FPNLite", 3.481, 50.72)
    assert seeds[2] == SeedMatch("ADE20K32", "MobileNetV2-1.4+FPNLite", 6.646, 52.93)
    assert seeds[1] is None and seeds[3] is None
    keys = [point.key for point in expansion.points]
    assert len(set(keys)) == len(keys)
    assert keys == [point.key for point in expand(spec, FINGERPRINT).points]
    assert not set(keys) & {point.key for point in expand(spec, "other code").points}


# ---------------------------------------------------------------- the task function

def test_run_point_int8_and_errors():
    spec = parse_spec(tiny_spec(sizes=("32x32", "30x30"), widths=(1.0,), classes=(4,), targets=("cpu",),
                                measures=("macs", "params", "latency", "findings", "ort_latency"))
                      | {"settings": {"calib_size": 2, "ort_runs": 2, "ort_warmup": 0}})
    points = expand(spec, FINGERPRINT).points
    fp32 = PointResult.from_dict(run_point(points[0]))
    int8 = PointResult.from_dict(run_point(replace(points[0], precision="int8")))
    assert fp32.status == int8.status == "ok", (fp32.error, int8.error)
    # 3x3/2 stem 16x16x16x27 + dw 3x3/2 8x8x16x9 + dw 5x5 8x8x16x25 + head 1x1 16x16x4x32
    assert fp32.macs == int8.macs == 16 * 16 * 16 * 27 + 8 * 8 * 16 * 9 + 8 * 8 * 16 * 25 + 16 * 16 * 4 * 32
    assert int8.weight_bytes < fp32.weight_bytes
    assert fp32.findings == 0   # depthwise 5x5 stride 1 runs under both TI rule sets (issue 17)
    assert fp32.ort_ms > 0 and fp32.latency_ms > 0
    bad_shape = PointResult.from_dict(run_point(points[1]))
    assert bad_shape.status == "error" and bad_shape.error.startswith("export failed")


# ---------------------------------------------------------------- both backends, error rows

@pytest.fixture(scope="module")
def backend_spec():
    """24 good points (3 sizes x 2 widths x 2 classes x 2 targets) and 4 failing ones."""
    failing = [{"model": "tests.sweep.test_sweep:broken_factory", "input_sizes": ["32x32"], "num_classes": ["default"]},
               {"model": FACTORY, "input_sizes": ["30x30"], "num_classes": [4]}]
    return parse_spec(tiny_spec(extra_models=failing), "backend.toml", REPO)


@pytest.fixture(scope="module")
def local_run(backend_spec, tmp_path_factory):
    directory = tmp_path_factory.mktemp("local")
    summary = run_sweep(backend_spec, directory / "results.csv", SweepOptions(workers=2, fingerprint=FINGERPRINT))
    return summary, directory


def test_local_sweep_records_failures_as_error_rows(local_run):
    summary, directory = local_run
    rows = read_table(directory / "results.csv")
    assert summary.total == len(rows) == 28 and summary.computed == 28 and summary.remaining == 0
    errors = [row for row in rows if row["status"] == "error"]
    assert len(errors) == summary.errors == 4
    assert {row["error"] for row in errors if row["model"].endswith("broken_factory")} == {
        "tests.sweep.test_sweep:broken_factory: factory failed (RuntimeError: broken on purpose)"}
    assert all(row["error"].startswith("export failed") for row in errors if row["input_size"] == "30x30")
    good = [row for row in rows if row["status"] == "ok"]
    assert len(good) == 24 and all(row["macs"] > 0 and row["latency_ms"] > 0 for row in good)
    assert [row["index"] for row in rows] == list(range(28))
    assert (directory / "results.jsonl").is_file() and len(list((directory / "results.cache").glob("*.json"))) == 28


def test_ray_backend_gives_the_same_table(backend_spec, local_run, tmp_path):
    try:
        import ray
    except ImportError:
        pytest.skip("ray cannot be imported (pip install ray): the ray backend is not tested")
    local_summary, local_directory = local_run
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="error")
    try:
        summary = run_sweep(backend_spec, tmp_path / "results.csv",
                            SweepOptions(backend="ray", fingerprint=FINGERPRINT))
    finally:
        ray.shutdown()
    assert summary.computed == 28 and summary.workers == 2
    assert comparable(read_table(tmp_path / "results.csv")) == comparable(read_table(local_directory / "results.csv"))
    ray_workers = {row["worker"] for row in read_table(tmp_path / "results.csv")}
    assert not ray_workers & {row["worker"] for row in read_table(local_directory / "results.csv")}


def test_a_worker_that_dies_costs_only_its_own_points(tmp_path):
    spec = parse_spec(tiny_spec(sizes=("32x32", "64x64"), widths=(1.0,), classes=(4,), targets=("tda4vm",),
                                extra_models=[{"model": "tests.sweep.test_sweep:crashing_factory",
                                               "input_sizes": ["32x32"]}]), "crash.toml", REPO)
    summary = run_sweep(spec, tmp_path / "results.csv", SweepOptions(workers=2, fingerprint=FINGERPRINT))
    rows = read_table(tmp_path / "results.csv")
    assert [row["status"] for row in rows] == ["ok", "ok", "error"]
    assert rows[2]["error"] == "worker process died (crash or out of memory)"
    # Not the point's fault: not cached, so the next run tries it again.
    assert summary.errors == 1 and len(list((tmp_path / "results.cache").glob("*.json"))) == 2


# ---------------------------------------------------------------- interruption and resume

def test_sigkill_midway_then_resume_computes_only_missing_points(tmp_path):
    spec_path = tmp_path / "sweep.toml"
    spec_path.write_text(textwrap.dedent(f"""
        measures = ["macs", "params"]
        [axes]
        models = [{{ model = "{FACTORY}", width_multipliers = [0.5, 1.0, 1.5, 2.0] }}]
        input_sizes = ["32x32", "48x48", "64x64", "80x80"]
        """))
    script = ("import sys; from segcost.sweep import SweepOptions, load_spec, run_sweep; "
              f"run_sweep(load_spec(sys.argv[1]), sys.argv[2], SweepOptions(workers=1, fingerprint={FINGERPRINT!r}))")
    cache = tmp_path / "results.cache"
    process = subprocess.Popen([sys.executable, "-c", script, str(spec_path), str(tmp_path / "results.csv")],
                               cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(cache.glob("*.json"))) < 3 and process.poll() is None:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its pool workers, with no chance to clean up
    process.wait()
    finished = len(list(cache.glob("*.json")))
    assert 3 <= finished < 16, process.stderr.read().decode()[-2000:]
    summary = run_sweep(parse_spec(tomllib_load(spec_path), str(spec_path)), tmp_path / "results.csv",
                        SweepOptions(workers=2, fingerprint=FINGERPRINT))
    assert (summary.cached, summary.computed, summary.errors) == (finished, 16 - finished, 0)
    rows = read_table(tmp_path / "results.csv")
    assert [row["index"] for row in rows] == list(range(16)) and all(row["status"] == "ok" for row in rows)


def tomllib_load(path: Path) -> dict:
    import tomllib

    return tomllib.loads(path.read_text())


def test_cli_max_points_then_resume_with_pareto(run_cli, tmp_path, monkeypatch):
    from segcost.sweep import points as points_module

    monkeypatch.setattr(points_module, "code_fingerprint", lambda: FINGERPRINT)
    monkeypatch.chdir(REPO)
    spec_path = tmp_path / "sweep.toml"
    spec_path.write_text(textwrap.dedent(f"""
        measures = ["macs"]
        [axes]
        models = [{{ model = "{FACTORY}", width_multipliers = [0.5, 1.0] }}, "MobileNetV2+UNetLite"]
        input_sizes = ["32x32", "64x64"]
        num_classes = [4]
        """))
    output = tmp_path / "results.csv"
    # The zoo points are served from a pre-filled cache: exporting UNetLite would take seconds.
    zoo_points = [point for point in expand(parse_spec(tomllib_load(spec_path), str(spec_path)), FINGERPRINT).points
                  if point.model == "MobileNetV2+UNetLite"]
    cache = tmp_path / "results.cache"
    cache.mkdir()
    for point, macs in zip(zoo_points, (100_000_000, 400_000_000)):
        (cache / f"{point.key}.json").write_text(json.dumps({"key": point.key, "status": "ok", "macs": macs}))
    code, _, err = run_cli("sweep", str(spec_path), "-o", str(output), "--max-points", "1", "--workers", "2", "-q",
                           "--trust-model-code")
    assert code == 0, err
    assert "6 points: 1 computed, 2 from cache, 0 errors" in err and "3 not run yet" in err
    code, out, err = run_cli("sweep", str(spec_path), "-o", str(output), "--workers", "2", "-q", "--pareto",
                             "--trust-model-code")
    assert code == 0, err
    assert "6 points: 3 computed, 3 from cache" in err
    assert len(read_table(output)) == 6
    # No zoo point here is at a seed row's size and classes: the front says so.
    assert "no finished point of this sweep reproduces a seed-table row" in out


def test_sigterm_stops_the_cli_with_the_finished_rows(tmp_path):
    spec_path = tmp_path / "sweep.toml"
    spec_path.write_text(textwrap.dedent(f"""
        measures = ["macs"]
        [axes]
        models = [{{ model = "{FACTORY}", width_multipliers = [0.5, 1.0, 1.5, 2.0] }}]
        input_sizes = ["32x32", "48x48", "64x64", "80x80", "96x96", "112x112"]
        """))
    output = tmp_path / "results.csv"
    process = subprocess.Popen([sys.executable, "-m", "segcost", "sweep", str(spec_path), "-o", str(output),
                                "--workers", "1", "--trust-model-code"], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(tmp_path.glob("results.cache/*.json"))) < 2:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()[-2000:]
    assert "re-run the same command to resume" in err.decode()
    rows = read_table(output)
    assert 2 <= len(rows) < 24 and rows == sorted(rows, key=lambda row: row["index"])


# ---------------------------------------------------------------- Pareto front

PARETO_MACS = {"MobileNetV2+UNetLite": 2.2e9, "MobileNetV2S16+DeepLabV3Lite": 3.54e9, "MobileNetV2+FPNLite": 3.77e9,
               "RegNetX800MF+FPNLite": 8.84e9}


def pareto_rows(sizes=("768x384",), classes=(19, 21)) -> list[SweepRow]:
    """Rows of four zoo models on two targets (made-up costs; no export): 768x384 with 19 classes reproduces
    Cityscapes rows with a published mIoU, 512x512 with 21 COCOSeg21 rows (3 of the 4 models); others have none."""
    spec = parse_spec({"measures": ["macs", "latency"], "axes": {
        "models": list(PARETO_MACS), "input_sizes": list(sizes), "num_classes": list(classes),
        "targets": ["tda4vm", "am62a"]}})
    rows = []
    for point in expand(spec, FINGERPRINT).points:
        macs = PARETO_MACS[point.model] * (1 + point.index / 1000)   # distinct costs for distinct points
        rows.append(SweepRow(point, PointResult(point.key, macs=int(macs),
                                                latency_ms=macs / (2e9 if point.target == "tda4vm" else 5e8))))
    return rows


def test_pareto_front_and_rendering():
    rows = pareto_rows()
    (front,) = pareto_fronts(rows, "gmacs")
    # Cityscapes 19 classes: UNet 68.94, DeepLab 69.13, FPN 70.39, RegNetX800 72.01: all on the front;
    # the 21-class points match no row and targets count once.
    assert [point.row.point.model for point in front.front] == list(PARETO_MACS)
    assert front.without_miou == 8 and len(front.points) == 4
    latency_fronts = pareto_fronts(rows, "latency")
    assert [front.target for front in latency_fronts] == ["tda4vm", "am62a"]
    assert dominance_flags([(1.0, 50.0), (2.0, 49.0), (2.0, 55.0), (3.0, 55.0), (0.5, 10.0)]) == [
        True, False, True, False, True]
    text = render_pareto_text([front])
    assert "RegNetX800MF+FPNLite 768x384 19 classes fp32" in text and "4 on the front" in text
    html = render_pareto_html(latency_fronts, "test.toml")
    assert html.count("<svg") == 2 and "<script" not in html and "http" not in html


def _charts(html: str) -> list[str]:
    return [chunk.split("</svg>")[0] for chunk in html.split("<svg")[1:]]


@pytest.mark.parametrize("cost", ["gmacs", "latency"])
def test_pareto_page_shows_every_point_on_shared_axes(cost):
    """Points with and without a published mIoU are all on the page (the latter in the 'unknown' band, in a
    colour of their own with a legend entry), and every chart has the same cost and mIoU ticks."""
    import re

    rows = pareto_rows(sizes=("768x384", "512x512"), classes=(19, 21))
    html = render_pareto_html(pareto_fronts(rows, cost), "test.toml")
    charts = _charts(html)
    # GMACs: a point counts once whatever its target; latency: once per target.
    expected = len({(row.point.label.replace(row.point.target or "", "") if cost == "gmacs" else row.point.label)
                    for row in rows})
    assert expected == (16 if cost == "gmacs" else 32)
    markers = [marker for chart in charts for marker in re.findall(r'class="point[^"]*"', chart)]
    assert len(markers) == expected
    unknown = sum(chart.count('class="point unknown"') for chart in charts)
    # published: 768x384 with 19 classes (Cityscapes, 4 models), 512x512 with 21 (COCOSeg21, 3 of them)
    assert unknown == expected - (7 if cost == "gmacs" else 14)
    assert html.count("<tr class=unknown>") == unknown and "mIoU unknown: no published seed-table row" in html
    ticks = [(re.findall(r'class="x-tick"[^>]*>([^<]+)<', chart), re.findall(r'class="y-tick"[^>]*>([^<]+)<', chart))
             for chart in charts]
    assert len(charts) == (2 if cost == "gmacs" else 4) and ticks[0][0] and ticks[0][1]
    assert all(tick == ticks[0] for tick in ticks)


def test_pareto_page_without_any_published_miou_still_shows_every_point():
    rows = pareto_rows(sizes=("640x352",), classes=(10,))
    fronts = pareto_fronts(rows, "gmacs")
    (front,) = fronts
    assert not front.points and len(front.unpublished) == 4 and front.without_miou == 8
    html = render_pareto_html(fronts, "test.toml")
    assert len(_charts(html)) == 1 and html.count('class="point unknown"') == 4
    assert "no point of this sweep has a published mIoU" in html and "no finished point of this sweep" in html


# ---------------------------------------------------------------- progress of the first point

def test_progress_steps_print_at_once_until_the_first_point_is_done():
    import io

    from segcost.sweep.progress import ProgressLine

    stream = io.StringIO()   # not a terminal: lines, rate-limited to one per interval once a point is done
    progress = ProgressLine(stream, total=4, to_compute=4, interval=3600)
    progress.step("model 32x32", "building and exporting to ONNX")
    progress.step("model 32x32", "calibrating 1/8")
    progress.update(1, 0, 1, 0, "model 32x32")
    progress.step("model 64x64", "analyzing")          # within the interval after a finished point: skipped
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("sweep [") and "0/4" in lines[0]
    assert lines[0].endswith("model 32x32: building and exporting to ONNX") and lines[1].endswith("calibrating 1/8")


def test_the_first_points_steps_are_reported_before_it_finishes(tmp_path):
    """A local sweep streams the first point's export/analysis/calibration steps from its worker."""
    import io

    document = tiny_spec(sizes=("32x32",), widths=(0.5,), classes=(4,), measures=("macs", "latency"),
                         targets=("tda4vm",))
    document["axes"]["precisions"] = ["int8"]
    document["settings"] = {"calib_size": 2}
    stream = io.StringIO()
    run_sweep(parse_spec(document, "sweep.toml"), tmp_path / "results.csv",
              SweepOptions(workers=1, fingerprint=FINGERPRINT), progress_stream=stream)
    lines = stream.getvalue().splitlines()
    finished = next(index for index, line in enumerate(lines) if "1/1 100%" in line)
    steps = [line.rsplit(": ", 1)[-1] for line in lines[:finished]]
    assert steps[:3] == ["starting 1 worker", "building and exporting to ONNX", "analyzing"], lines
    assert "calibrating 1/2" in steps and "calibrating 2/2" in steps and "estimating latency on tda4vm" in steps
    assert all("0/1" in line for line in lines[:finished])
