"""The cost model: structure, physical limits, monotonicity, fusion, fallback and transfer accounting."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from segcost.analyzer import analyze
from segcost.frontends.onnx import load_model
from segcost.targets.cost_model import ACCELERATOR, estimate
from segcost.targets.profile import MemoryLevel
from segcost.targets.profile_toml import load_profile
from tests.targets.models import conv_chain, custom_tail, fused, single_conv


@pytest.fixture(scope="module")
def deeplab_768x384():
    from segcost.samples import deeplabv3lite

    return fused(deeplabv3lite(num_classes=19, height=384, width_px=768))


def _ideal(profile_name: str = "tda4vm"):
    """The profile with perfect efficiency and unlimited bandwidth: only the MAC peak limits."""
    profile = load_profile(profile_name)
    return dataclasses.replace(
        profile, efficiency={kind: 1.0 for kind in profile.efficiency}, layer_overhead_cycles=0.0,
        run_overhead_us=0.0, memory=(MemoryLevel("ideal", None, 1e12),), host_io_bytes_per_cycle=0.0)


def test_deeplabv3lite_768x384_reports_latency_and_utilisation(deeplab_768x384):
    report = estimate(deeplab_768x384, "tda4vm")
    totals = report.totals
    assert totals.latency_ms > 0 and totals.fps == pytest.approx(1000 / totals.latency_ms)
    assert 0 < totals.utilisation_pct < 100
    assert totals.macs == analyze(deeplab_768x384).totals.macs          # exact ints from the analyzer
    assert isinstance(totals.macs, int)
    assert sum(totals.share_by_kind.values()) == pytest.approx(1.0)
    run_share = (totals.run_overhead_ms + totals.transfer_ms) / totals.latency_ms
    assert sum(totals.share_by_op_type.values()) + run_share == pytest.approx(1.0)
    assert list(totals.share_by_op_type)[0] in ("Conv", "Concat", "Resize")
    # no fallback: the only crossings are the image in and the logits out (host buffers)
    assert totals.fallback_layers == 0
    assert sorted(item.direction for item in report.transfers) == ["accelerator->host", "host->accelerator"]
    layer_sum = sum(layer.ms for layer in report.layers)
    assert totals.latency_ms == pytest.approx(layer_sum + totals.transfer_ms + totals.run_overhead_ms)
    for layer in report.layers:
        assert layer.bound in ("compute", "memory", "overhead")
        assert layer.placement == ACCELERATOR
        assert 0 <= layer.utilisation_pct <= 100 + 1e-9
        assert layer.cycles >= 0 and layer.reason
    slowest = report.slowest(5)
    assert [layer.ms for layer in slowest] == sorted((layer.ms for layer in slowest), reverse=True)
    assert slowest[0].ms == max(layer.ms for layer in report.layers)


def test_depthwise_layers_have_low_mma_utilisation(deeplab_768x384):
    report = estimate(deeplab_768x384, "tda4vm")
    depthwise = [layer for layer in report.layers if layer.kind == "depthwise"]
    pointwise = [layer for layer in report.layers if layer.kind == "pointwise"]
    assert max(layer.utilisation_pct for layer in depthwise) < min(
        max(layer.utilisation_pct for layer in pointwise), 10)
    assert any("depthwise" in layer.reason or "memory-bound" in layer.reason for layer in report.slowest(5))


@pytest.mark.parametrize("profile_name", ["tda4vm", "am62a", "cpu"])
def test_compute_bound_dense_conv_never_exceeds_the_mac_peak(profile_name):
    graph = load_model(single_conv(256, 256, 64))
    ideal = _ideal(profile_name)
    (layer,) = estimate(graph, ideal).layers
    assert layer.bound == "compute"
    assert layer.utilisation_pct == pytest.approx(100.0)   # aligned channels, efficiency 1: exactly the peak
    assert layer.cycles >= layer.macs / ideal.macs_per_cycle
    (real,) = estimate(graph, profile_name).layers
    assert real.utilisation_pct <= 100.0
    assert real.cycles >= layer.cycles


def test_misaligned_channels_lower_utilisation():
    per_tap = _ideal().with_values(taps_in_reduction=False)
    aligned = estimate(load_model(single_conv(64, 64, 32)), per_tap).layers[0]
    misaligned = estimate(load_model(single_conv(24, 64, 32)), per_tap).layers[0]
    assert misaligned.utilisation_pct == pytest.approx(100 * 24 / 64)   # 24 of the MMA's 64 input lanes
    assert aligned.utilisation_pct == pytest.approx(100)
    assert "24 in / 64 out channels fill 38%" in misaligned.reason
    # taps in the reduction (TIDL): 24 channels x 9 taps = 216 of 4 tiles' 256 rows
    im2col = estimate(load_model(single_conv(24, 64, 32)), _ideal().with_values(taps_in_reduction=True)).layers[0]
    assert im2col.utilisation_pct == pytest.approx(100 * 216 / 256)


def test_cycles_grow_with_work_and_shrink_with_bandwidth_and_efficiency():
    profile = load_profile("tda4vm")
    small, large = (estimate(load_model(single_conv(64, 64, size)), profile).layers[0] for size in (16, 64))
    assert large.cycles > small.cycles and large.macs == 16 * small.macs
    graph = load_model(single_conv(32, 32, 128, kernel=3, group=32))   # depthwise: memory-heavy
    slow = estimate(graph, profile).layers[0]
    faster_memory = dataclasses.replace(profile, memory=tuple(
        dataclasses.replace(level, bytes_per_cycle=level.bytes_per_cycle * 4) for level in profile.memory))
    better = dataclasses.replace(profile, efficiency={**profile.efficiency, "depthwise": 0.5})
    assert estimate(graph, faster_memory).layers[0].cycles <= slow.cycles
    assert estimate(graph, better).layers[0].cycles <= slow.cycles
    assert estimate(graph, dataclasses.replace(profile, layer_overhead_cycles=0)).layers[0].cycles < slow.cycles


def test_fused_activation_is_free_and_unfused_costs():
    model = conv_chain(relu=True)
    fused_report = estimate(fused(model), "tda4vm")
    relu = next(layer for layer in fused_report.layers if layer.op_type == "Relu")
    assert relu.cycles == 0 and "fused into conv1" in relu.reason
    plain = estimate(load_model(model), "tda4vm")
    assert next(layer for layer in plain.layers if layer.op_type == "Relu").cycles > 0
    assert fused_report.totals.latency_ms < plain.totals.latency_ms


def _fallback(report):
    """The hand-overs between accelerator and ARM (not the graph inputs/outputs crossing to the host)."""
    return [item for item in report.transfers if "host" not in item.direction]


def test_unsupported_op_falls_back_with_two_transfers():
    profile = load_profile("tda4vm")
    report = estimate(fused(conv_chain(middle="softplus")), profile)
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["softplus"].placement == "arm" and "Softplus is not supported" in by_name["softplus"].reason
    assert by_name["conv1"].placement == by_name["conv2"].placement == ACCELERATOR
    assert by_name["relu1"].placement == ACCELERATOR            # fused into conv1, which runs on the MMA
    assert [transfer.direction for transfer in _fallback(report)] == ["accelerator->arm", "arm->accelerator"]
    elements = 64 * 32 * 32
    arm_bytes = 4                                                # fallback runs float32, the MMA int8
    for transfer in _fallback(report):
        assert transfer.bytes == elements * (1 + arm_bytes)
        expected = transfer.bytes / (profile.fallback.transfer_gbytes_per_s * 1e6) \
            + profile.fallback.transfer_overhead_us / 1000
        assert transfer.ms == pytest.approx(expected)
    totals = report.totals
    assert totals.transfer_ms > 0
    assert totals.transfer_ms == pytest.approx(sum(transfer.ms for transfer in report.transfers))
    assert totals.fallback_layers == 1 and totals.fallback_ms == pytest.approx(by_name["softplus"].ms)
    assert totals.latency_ms == pytest.approx(sum(layer.ms for layer in report.layers) + totals.transfer_ms
                                              + totals.run_overhead_ms)
    assert totals.share_by_kind["transfer"] == pytest.approx(totals.transfer_ms / totals.latency_ms)


def test_custom_domain_op_falls_back():
    report = estimate(fused(custom_tail()), "tda4vm")
    by_name = {layer.name: layer for layer in report.layers}
    assert by_name["custom"].placement == "arm" and "op com.example::MyOp is not supported" in by_name["custom"].reason
    assert by_name["custom"].cycles > 0                          # memory traffic + overhead, never free
    (transfer,) = _fallback(report)
    assert (transfer.tensor, transfer.direction, transfer.bytes) == ("c1", "accelerator->arm", 64 * 32 * 32 * 5)


def test_depthwise_5x5_stride_2_falls_back_under_the_sdk_9_2_rules_only():
    legacy = load_profile("tda4vm").with_values(rules="legacy")
    stride2 = estimate(fused(conv_chain(middle="depthwise", dw_kernel=5, dw_stride=2)), legacy)
    dw = next(layer for layer in stride2.layers if layer.name == "dw")
    assert dw.placement == "arm" and "dw-kernel-stride" in dw.reason
    assert len(_fallback(stride2)) == 2
    for profile in ("tda4vm", legacy):   # 5x5 stride 1: both TI documents allow it
        stride1 = estimate(fused(conv_chain(middle="depthwise", dw_kernel=5, dw_stride=1)), profile)
        assert all(layer.placement == ACCELERATOR for layer in stride1.layers) and not _fallback(stride1)
    current = estimate(fused(conv_chain(middle="depthwise", dw_kernel=5, dw_stride=2)), "tda4vm")
    assert all(layer.placement == ACCELERATOR for layer in current.layers)


def test_cpu_profile_has_no_fallback():
    report = estimate(fused(conv_chain(middle="softplus")), "cpu")
    assert all(layer.placement == ACCELERATOR for layer in report.layers)
    # No fallback hand-overs; the only conversions are onnxruntime's NCHWc reorders: into the
    # first conv (64 input channels), around the Softplus its blocked kernels do not run, at the output.
    assert [(item.consumer, item.direction) for item in report.transfers] == [
        ("conv1", "plain->blocked"), ("softplus", "blocked->plain"), ("conv2", "plain->blocked"),
        ("output", "blocked->plain")]


def test_estimate_from_analysis_result_with_findings():
    from segcost.passes import VerifyGroupedConvPass

    graph = fused(conv_chain(middle="depthwise", dw_kernel=5, dw_stride=1))
    findings = VerifyGroupedConvPass(rules="current")(graph).findings
    from_analysis = estimate(analyze(graph), "tda4vm", findings=findings)
    from_graph = estimate(graph, "tda4vm")
    assert [layer.placement for layer in from_analysis.layers] == [layer.placement for layer in from_graph.layers]
    # Without the graph the fusion marks are unknown, so the Relu is costed.
    assert from_analysis.totals.latency_ms > from_graph.totals.latency_ms


def test_report_to_dict_is_json_ready(deeplab_768x384):
    import json

    document = estimate(deeplab_768x384, "am62a").to_dict()
    assert document["schema"] == "segcost.target/1" and document["profile"] == "am62a"
    assert len(document["layers"]) == len(deeplab_768x384)
    json.dumps(document)


def test_unaligned_depthwise_convs_use_their_own_efficiency():
    base = dataclasses.replace(_ideal("cpu"), align_width=16, unaligned_efficiency=0.5,
                               unaligned_depthwise_efficiency=None, memory_overlap=1.0)

    def depthwise_ms(channels: int, profile) -> float:
        report = estimate(fused(conv_chain(channels, 32, middle="depthwise")), profile)
        (layer,) = [layer for layer in report.layers if layer.kind == "depthwise"]
        return layer.ms

    # Without the parameter an unaligned depthwise conv pays unaligned_efficiency, like any conv.
    assert depthwise_ms(18, base) == pytest.approx(2 * depthwise_ms(18, dataclasses.replace(
        base, unaligned_efficiency=1.0)))
    slow = dataclasses.replace(base, unaligned_depthwise_efficiency=0.25)
    assert depthwise_ms(18, slow) == pytest.approx(2 * depthwise_ms(18, base))
    assert depthwise_ms(32, slow) == pytest.approx(depthwise_ms(32, base))      # whole blocks: no penalty
    dense_base = estimate(load_model(single_conv(24, 64, 32)), base).layers[0].ms
    assert estimate(load_model(single_conv(24, 64, 32)), slow).layers[0].ms == pytest.approx(dense_base)


def _conv_then_resize(in_channels: int, out_channels: int = 19):
    from segcost.samples.builder import GraphBuilder

    builder = GraphBuilder(seed=0)
    y = builder.conv("input", in_channels, out_channels, 1, name="classifier", bias=True)
    y = builder.resize(y, 4, "upsample")
    return load_model(builder.model("input", (1, in_channels, 16, 16), y, (1, out_channels, 64, 64)))


def test_blocked_layout_follows_the_runtime_path():
    cpu = dataclasses.replace(load_profile("cpu"), layer_overhead_cycles=0.0, unaligned_efficiency=0.5,
                              unaligned_vector_efficiency=0.25, memory=(MemoryLevel("ideal", None, 1e12),))
    assert cpu.blocked_layout and cpu.align_width == 8

    def layers(in_channels: int) -> dict:
        return {layer.name: layer for layer in estimate(_conv_then_resize(in_channels), cpu).layers}

    on_path, off_path = layers(32), layers(38)
    # 32 input channels fill the NCHWc blocks: the Resize works on 19 channels padded to 24.
    assert off_path["upsample"].ms == pytest.approx(on_path["upsample"].ms * (19 / 24) / 0.25)
    # A 1x1 conv reading 38 channels leaves the blocked path (onnxruntime runs it in plain NCHW).
    per_mac_on = on_path["classifier"].ms / on_path["classifier"].macs
    per_mac_off = off_path["classifier"].ms / off_path["classifier"].macs
    assert per_mac_off > per_mac_on
    tda4vm = dataclasses.replace(load_profile("tda4vm"), layer_overhead_cycles=0.0)
    assert not tda4vm.blocked_layout
    plain = {layer.name: layer for layer in estimate(_conv_then_resize(32), tda4vm).layers}
    assert plain["upsample"].ms == pytest.approx(
        {layer.name: layer for layer in estimate(_conv_then_resize(38), tda4vm).layers}["upsample"].ms)


def test_valid_tap_fraction_counts_taps_that_reach_the_input():
    from segcost.targets.runtime import valid_tap_fraction

    def fraction(dilation: int, size: int = 12) -> float:
        attrs = {"dilations": [dilation, dilation], "pads": [dilation] * 4, "strides": [1, 1]}
        return valid_tap_fraction(attrs, [1, 8, size, size], [1, 8, size, size], [3, 3])

    assert fraction(1) == 1.0
    assert fraction(6) == 1.0                   # every tap reaches the map for some output
    assert fraction(12) == pytest.approx(1 / 9)  # only the centre tap ever reads the 12x12 map
    assert fraction(12, size=13) == 1.0
    assert valid_tap_fraction({"auto_pad": "SAME_UPPER"}, [1, 8, 12, 12], [1, 8, 12, 12], [3, 3]) == 1.0


def test_a_sum_with_a_plain_addend_is_not_folded_into_a_blocked_conv():
    from segcost.samples.builder import GraphBuilder

    def report(transposed: bool):
        builder = GraphBuilder(seed=0)
        x = builder.conv("input", 16, 16, 1, name="entry")
        if transposed:   # onnxruntime runs ConvTranspose in plain NCHW
            weight = builder.constant("up.weight", np.full((16, 16, 1, 1), 0.05, np.float32))
            x = builder.node("ConvTranspose", [x, weight], "up", kernel_shape=[1, 1])
        y = builder.conv(x, 16, 16, 3, name="body")
        y = builder.node("Add", [x, y], "sum")
        return {layer.name: layer for layer in estimate(
            load_model(builder.model("input", (1, 16, 32, 32), y, (1, 16, 32, 32))), "cpu").layers}

    assert report(False)["sum"].ms == 0.0 and "folded into body" in report(False)["sum"].reason
    assert report(True)["sum"].ms > 0.0


def test_off_path_layers_say_why():
    report = {layer.name: layer for layer in estimate(_conv_then_resize(38), "cpu").layers}
    assert "off the runtime's blocked path" in report["classifier"].reason
    assert "off the runtime's blocked path" in report["upsample"].reason
    aligned = {layer.name: layer for layer in estimate(_conv_then_resize(32), "cpu").layers}
    assert "blocked path" not in aligned["classifier"].reason + aligned["upsample"].reason


def test_only_float_convs_join_the_blocked_layout():
    from segcost.pipeline import optimize
    from segcost.quant.quantize import QuantizeOptions, quantize_graph
    from segcost.samples import deeplabv3lite
    from segcost.samples.builder import GraphBuilder

    builder = GraphBuilder(seed=0)
    y = builder.conv("input", 16, 16, 1, name="conv")
    y = builder.node("Reshape", [y, builder.constant("shape", np.array([1, 16 * 8 * 8], np.int64))], "flat")
    y = builder.node("MatMul", [y, builder.constant("w1", np.full((1024, 64), 0.01, np.float32))], "fc1")
    y = builder.node("MatMul", [y, builder.constant("w2", np.full((64, 10), 0.01, np.float32))], "fc2")
    report = estimate(load_model(builder.model("input", (1, 16, 8, 8), y, (1, 10))), "cpu")
    # MatMuls run on plain tensors: reorders into the conv and before the Reshape, none around them
    assert [(item.consumer, item.direction) for item in report.transfers] == [
        ("conv", "plain->blocked"), ("flat", "blocked->plain")]
    float_graph = optimize(load_model(deeplabv3lite(width=0.35, num_classes=5, height=64, width_px=64))).graph
    qdq = quantize_graph(float_graph, QuantizeOptions(calib_size=2)).graph
    # an int8 QDQ conv becomes an NHWC QLinearConv in onnxruntime, never an NCHWc one
    assert estimate(qdq, "cpu").transfers == []
