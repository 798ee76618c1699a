"""The HTML reports (analyze, optimize --int8, the sweep's Pareto page): self-contained, every colour explained,
names readable, and rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from segcost.reports.svg import short_name
from segcost.samples import deeplabv3lite
from segcost.sweep.pareto import pareto_fronts
from segcost.sweep.report import render_pareto_html
from tests.conftest import weight
from tests.sweep.test_sweep import pareto_rows

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
LONG = "/model/backbone/backbone.14/block/conv_bn_relu_projection/depthwise_separable/Conv"


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.charts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.tags.append(tag)
        self.links += [value for name, value in attrs if name in ("src", "href") and value]
        if tag == "svg":
            self.charts.append(attributes.get("aria-label", ""))


def _long_named_model() -> onnx.ModelProto:
    """Conv (long torch-style name) -> ConvTranspose 5x5 stride 2 (in no TIDL rule set: falls back)."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name=LONG, pads=[1, 1, 1, 1]),
             helper.make_node("ConvTranspose", ["c", "t"], ["y"], name="/model/decoder/up/ConvTranspose",
                              strides=[2, 2], pads=[2, 2, 2, 2], output_padding=[1, 1])]
    graph = helper.make_graph(nodes, "long", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight(16, 8, 3, 3), "w"),
                               numpy_helper.from_array(weight(16, 4, 5, 5), "t")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """The three report kinds: built-in model, built-in on a target, long-named model with a fallback layer."""
    from segcost.cli import main

    folder = tmp_path_factory.mktemp("html")
    onnx.save_model(_long_named_model(), folder / "long.onnx")
    runs = {"plain": [], "target": ["--target", "tda4vm"],
            "fallback": [str(folder / "long.onnx"), "--target", "tda4vm", "--group-by", "prefix:2"]}
    paths = {}
    for name, args in runs.items():
        paths[name] = folder / f"{name}.html"
        argv = ["analyze", *args, "--format", "html", "-o", str(paths[name])]
        if args and args[0].endswith(".onnx"):
            argv = ["analyze", args[0], *args[1:], "--format", "html", "-o", str(paths[name])]
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 0
    onnx.save_model(deeplabv3lite(width=0.35, num_classes=4, height=64, width_px=64), folder / "small.onnx")
    paths["int8"] = folder / "int8.html"
    with pytest.raises(SystemExit) as exited:
        main(["optimize", str(folder / "small.onnx"), "--int8", "--calib-size", "2", "-o", str(folder / "q.onnx"),
              "--report", str(paths["int8"])])
    assert exited.value.code == 0
    paths["sweep"] = folder / "sweep.html"   # the sweep's Pareto page (rows made up: no export needed)
    paths["sweep"].write_text(render_pareto_html(pareto_fronts(pareto_rows(sizes=("768x384", "512x512")), "latency"),
                                                 "sweep.toml"))
    return paths


EXPECTED_CHARTS = {"plain": ["MACs per layer", "MACs by stage", "activation memory"],
                   "target": ["MACs per layer", "MACs by stage", "latency by stage", "activation memory",
                              "latency per layer", "roofline"],
                   "fallback": ["MACs per layer", "MACs by stage", "latency by stage", "activation memory",
                                "latency per layer", "roofline"],
                   "int8": ["int8 SQNR per layer"],
                   "sweep": [f"latency ms on {target} vs published mIoU ({dataset})"
                             for dataset in ("Cityscapes", "COCOSeg21") for target in ("tda4vm", "am62a")]}


@pytest.mark.parametrize("kind", EXPECTED_CHARTS)
def test_report_is_self_contained_and_has_its_charts(reports, kind):
    text = reports[kind].read_text()
    parser = _Collector()
    parser.feed(text)
    assert "script" not in parser.tags and parser.links == []   # nothing fetched from anywhere
    assert parser.charts == EXPECTED_CHARTS[kind]


@pytest.mark.parametrize("kind", EXPECTED_CHARTS)
def test_every_colour_has_a_legend(reports, kind):
    text = reports[kind].read_text()
    used = set(re.findall(r'<(?:rect|circle|polygon)[^>]* fill="(#[0-9a-f]{6})"', text))
    explained = set(re.findall(r'<i style="background:(#[0-9a-f]{6})"></i>', text))
    assert used and used <= explained, f"colours without a legend: {used - explained}"


def test_built_in_report_totals_and_peak(reports):
    text = reports["plain"].read_text()
    assert "3,161,391,104 MACs" in text and "Verifier findings (0)" in text
    assert text.count('<g class="row">') == 40 + 4   # top 40 layers + 4 stages (encoder, aspp, decoder, head)
    assert "peak 48.00 MiB at #" in text             # the timeline's peak is totals.peak_activation_bytes


def test_long_names_shortened_with_the_full_name_on_hover_and_fallback_marked(reports):
    text = reports["fallback"].read_text()
    short = short_name(LONG)
    assert short != LONG and "…" in short and short.startswith("/model/") and short.endswith("/Conv")
    assert f">{short}</text>" in text and f"<title>{LONG}: " in text
    assert "/model/decoder/up/ConvTranspose [fallback]" in text
    assert "runs on the fallback core" in text
    assert all(f">{level} " in text for level in ("L2", "MSMC", "DDR"))   # every memory level's roof is labelled
    assert "achieved MACs per second" in text and "MACs per byte moved" in text


def test_int8_report_ranks_layers_by_sqnr(reports):
    text = reports["int8"].read_text()
    values = [float(value) for value in re.findall(r'y="\d+">(-?[\d.]+) dB \(', text)]
    assert len(values) > 5 and values == sorted(values)    # lowest SQNR first
    assert "int8 accuracy" in text and "cosine" in text


@pytest.mark.parametrize("name, limit, expected", [
    ("encoder.block1.expand", 44, "encoder.block1.expand"),
    ("/model/backbone/backbone.14/a/b/c/d/e/f/Conv", 30, "/model/…/a/b/c/d/e/f/Conv"),
    ("/model/backbone/backbone.14/features.3/block/conv/Conv", 24, "/model/…/block/conv/Conv"),
    ("x" * 50, 11, "xxxxx…xxxxx"),
])
def test_short_name(name, limit, expected):
    assert short_name(name, limit) == expected


def _chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and os.environ.get("SEGCOST_REQUIRE_CHROMIUM"):
        pytest.fail("SEGCOST_REQUIRE_CHROMIUM is set but chromium is not installed (apt-get install chromium)")
    return found


@pytest.mark.parametrize("kind", EXPECTED_CHARTS)
def test_report_renders_in_headless_chromium(reports, kind, tmp_path):
    chromium = _chromium()
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    base = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
            "--v=0"]
    dumped = subprocess.run([*base, "--dump-dom", reports[kind].as_uri()], capture_output=True, text=True,
                            timeout=180, check=True)
    parser = _Collector()
    parser.feed(dumped.stdout)   # the DOM after loading: every chart is there
    assert parser.charts == EXPECTED_CHARTS[kind]
    if kind == "sweep":   # every point of the sweep: 4 models x 2 sizes x 2 classes x 2 targets
        assert len(re.findall(r'class="point[ "]', dumped.stdout)) == 32
    assert not re.search(r"CONSOLE|Uncaught|net::ERR_", dumped.stderr), dumped.stderr
    screenshot = tmp_path / "report.png"
    subprocess.run([*base, "--window-size=1200,1600", f"--screenshot={screenshot}", reports[kind].as_uri()],
                   capture_output=True, timeout=180, check=True)
    data = screenshot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000   # a blank page compresses to a few KB


@pytest.mark.parametrize("build", [_long_named_model, lambda: deeplabv3lite(width=0.35, num_classes=4, height=64,
                                                                           width_px=64)])
def test_timeline_peak_is_the_analysis_peak(build):
    from segcost.analyzer import analyze
    from segcost.analyzer.timeline import activation_timeline
    from segcost.frontends.onnx import load_model

    graph = load_model(build())
    timeline = activation_timeline(graph)
    assert len(timeline.live_bytes) == len(timeline.layers) == len(graph.dag)
    assert timeline.peak_bytes == max(timeline.live_bytes) == analyze(graph).totals.peak_activation_bytes
    assert sum(size for _, size in timeline.live_at_peak) == timeline.peak_bytes
