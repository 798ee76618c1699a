"""Device-time references, the terms they call for (block-diagonal grouped tiling, host I/O), the fit to them."""

from __future__ import annotations

import csv
import importlib.resources
import math

import onnx
import pytest

from segcost.errors import InputError
from segcost.frontends import onnx as onnx_frontend
from segcost.pipeline import build_pipeline
from segcost.targets.cost_model import (
    estimate,
    estimate_prepared,
    load_profile,
    prepare,
)
from segcost.targets.device_fit import (
    DeviceSample,
    fit_device,
    leave_one_out,
    macs_only_leave_one_out,
    median_abs_log,
    read_reference,
    spearman,
)
from segcost.targets.device_terms import matrix_fill
from tests.targets.models import conv_chain


def test_block_diagonal_tiling_packs_groups_on_the_tile():
    assert matrix_fill(16, 16, 64, groups=8, tiling="per_group") == pytest.approx(1 / 16)
    assert matrix_fill(16, 16, 64, groups=8, tiling="block_diagonal") == pytest.approx(1 / 4)
    assert matrix_fill(24, 24, 64, groups=8, tiling="block_diagonal") == pytest.approx(2 * 24 * 24 / 64 ** 2)
    assert matrix_fill(64, 64, 64, groups=4, tiling="block_diagonal") == 1.0   # whole-tile groups: nothing to pack
    assert matrix_fill(24, 40, 64) == pytest.approx(24 / 64 * 40 / 64)          # dense


def _grouped_model(group_width=16, channels=128, size=32):
    builder_model = conv_chain(channels=channels, size=size)
    graph = builder_model.graph
    weight = next(init for init in graph.initializer if init.name == "w2")
    import numpy as np
    from onnx import numpy_helper

    grouped = np.zeros((channels, group_width, 1, 1), np.float32)
    weight.CopyFrom(numpy_helper.from_array(grouped, "w2"))
    next(node for node in graph.node if node.name == "conv2").attribute.append(
        onnx.helper.make_attribute("group", channels // group_width))
    return builder_model


def test_grouped_conv_costs_its_block_diagonal_fill():
    graph = build_pipeline()(onnx_frontend.load_model(_grouped_model())).graph
    profile = load_profile("tda4vm")
    per_group = estimate(graph, profile.with_values(grouped_tiling="per_group"))
    packed = estimate(graph, profile.with_values(grouped_tiling="block_diagonal"))
    slow = next(layer for layer in per_group.layers if layer.name == "conv2").compute_cycles
    fast = next(layer for layer in packed.layers if layer.name == "conv2").compute_cycles
    assert slow / fast == pytest.approx(4.0)   # (16/64)^2 vs 4·16·16/64^2


def _with_argmax(model):
    graph = model.graph
    (output,) = graph.output
    graph.node.append(onnx.helper.make_node("ArgMax", [output.name], ["labels"], name="argmax", axis=-3))
    graph.output.remove(output)
    graph.output.append(onnx.helper.make_tensor_value_info("labels", onnx.TensorProto.INT64, None))
    return model


def test_graph_outputs_cross_to_the_host_and_an_argmax_shrinks_them():
    logits = estimate(build_pipeline()(onnx_frontend.load_model(conv_chain())).graph, "tda4vm")
    labels = estimate(build_pipeline()(onnx_frontend.load_model(_with_argmax(conv_chain()))).graph, "tda4vm")
    out_logits = next(item for item in logits.transfers if item.direction == "accelerator->host")
    out_labels = next(item for item in labels.transfers if item.direction == "accelerator->host")
    assert out_logits.bytes == 64 * 32 * 32 * (1 + 4)          # int8 read, float32 host buffer written
    assert out_labels.bytes * 64 == out_logits.bytes            # ArgMax over 64 channels: 64x fewer elements
    argmax = next(layer for layer in labels.layers if layer.name == "argmax")
    assert argmax.placement == "accelerator"                     # axis -3 is the channel axis


def test_read_reference_takes_the_median_and_keeps_sources(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("model,total_ms,repo,path,commit\na,1.0,r,p,c1\na,3.0,r,p,c2\na,2.5,r,p,c3\nb,4,r,p,c1\n")
    times = read_reference(path)
    assert times["a"].median_ms == 2.5 and times["a"].values == (1.0, 3.0, 2.5) and times["b"].median_ms == 4
    assert times["a"].sources[0] == "r p c1"
    path.write_text("model,total_ms\na,-1\n")
    with pytest.raises(InputError, match="not a positive number"):
        read_reference(path)


@pytest.mark.parametrize("value", ["1e308", "1e-308", "inf", "nan"])
def test_read_reference_refuses_times_no_inference_takes(tmp_path, value):
    """Out of [1 ns, 1 h] a time is a typo or unit error; 1e308 used to fit to a "median inf" profile."""
    path = tmp_path / "ref.csv"
    path.write_text(f"model,total_ms\na,1.0\nb,{value}\n")
    with pytest.raises(InputError, match=f"ref.csv:3: total_ms '{value}' is not"):
        read_reference(path)


@pytest.mark.parametrize("value", ["１２.５", "1_0", " 8 ", "٣٠", "8ms"])
def test_read_reference_takes_ascii_numbers_only(tmp_path, value):
    """float() took all of these (breaker7 R6); segcost reads numbers in text as fileio.numbers does."""
    path = tmp_path / "ref.csv"
    path.write_text(f"model,total_ms\na,1.0\nb,{value}\n", encoding="utf-8")
    with pytest.raises(InputError, match="ref.csv:3: total_ms .* is not a positive number of ms written in ASCII"):
        read_reference(path)


@pytest.mark.parametrize("soc", ["tda4vm", "am62a"])
def test_shipped_references_cite_repo_path_and_commit(soc):
    text = importlib.resources.files("segcost.targets").joinpath("references", f"{soc}.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert len({row["model"] for row in rows}) >= 6
    for row in rows:
        assert row["repo"].startswith("TexasInstruments/") and row["path"].endswith(".csv")
        assert len(row["commit"]) == 40 and float(row["total_ms"]) > 0


def _samples(truth):
    samples = []
    for index, channels in enumerate((32, 64, 96, 128, 192)):
        model = conv_chain(channels=channels, size=16 + 8 * index, middle="depthwise" if index % 2 else None)
        prepared = prepare(build_pipeline()(onnx_frontend.load_model(model)).graph, truth.rules)
        samples.append(DeviceSample(f"m{index}", prepared, estimate_prepared(prepared, truth).totals.latency_ms))
    return samples


def test_fit_recovers_device_times_generated_by_a_known_profile():
    base = load_profile("tda4vm")
    truth = base.with_values(layer_overhead_cycles=base.layer_overhead_cycles / 5,
                             efficiency={**base.efficiency, "depthwise": base.efficiency["depthwise"] / 4})
    samples = _samples(truth)
    before = median_abs_log([estimate_prepared(s.prepared, base).totals.latency_ms for s in samples],
                            [s.measured_ms for s in samples])
    fit = fit_device(samples, base)
    assert fit.median_abs_log_error < before / 3
    loo = leave_one_out(samples, base)
    assert median_abs_log(list(loo.values()), [s.measured_ms for s in samples]) < before
    macs = macs_only_leave_one_out(samples)
    assert set(macs) == {s.name for s in samples} and all(value > 0 for value in macs.values())


def test_spearman():
    assert spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 1], [1, 2]))


def test_calibrate_reference_cli_writes_a_loadable_fitted_profile(run_cli, tmp_path):
    base = load_profile("tda4vm")
    truth = base.with_values(layer_overhead_cycles=base.layer_overhead_cycles * 3)
    rows = ["model,total_ms,repo,path,commit"]
    for sample, index in zip(_samples(truth), range(5)):
        channels = (32, 64, 96, 128, 192)[index]
        onnx.save(conv_chain(channels=channels, size=16 + 8 * index, middle="depthwise" if index % 2 else None),
                  str(tmp_path / f"{sample.name}.onnx"))
        rows.append(f"{sample.name},{sample.measured_ms:.6f},me,bench.csv,{'0' * 40}")
    (tmp_path / "ref.csv").write_text("\n".join(rows) + "\n")
    code, out, err = run_cli("calibrate", "--reference", str(tmp_path / "ref.csv"), "--base", "tda4vm",
                             "-o", str(tmp_path / "fit.toml"))
    assert code == 0, err
    assert "leave-one-out: median |ln(pred/meas)|" in out and "layer_overhead_cycles" in out
    fitted = load_profile(str(tmp_path / "fit.toml"))
    assert fitted.layer_overhead_cycles > base.layer_overhead_cycles
    assert "fitted to ref.csv" in (tmp_path / "fit.toml").read_text()
    code, _, err = run_cli("calibrate", "--reference", str(tmp_path / "nope.csv"), "-o", str(tmp_path / "x.toml"))
    assert code == 2 and err.startswith("segcost: error:")
