"""Names from the model are untrusted text: control characters never reach a report raw."""

from __future__ import annotations

import xml.etree.ElementTree as ElementTree

import numpy as np
import onnx
import pytest
from onnx import TensorProto
from onnx import helper as h
from onnx import numpy_helper as nh

HOSTILE = "a\x1b[31mRED\x07\r\nsegcost: error: fake|x\u202e"


@pytest.fixture
def hostile_model(tmp_path) -> str:
    weight = nh.from_array(np.ones((4, 3, 3, 3), np.float32), "W")
    graph = h.make_graph([h.make_node("Conv", ["x", "W"], ["y"], pads=[1, 1, 1, 1], name=HOSTILE)], "g",
                         [h.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                         [h.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], [weight])
    path = tmp_path / "m.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), path)
    return str(path)


def _no_raw_controls(text: str) -> None:
    assert not any(char in text for char in "\x1b\x07\r\u202e")
    assert not any(line.startswith("segcost: error") for line in text.splitlines())


def test_junit_is_well_formed_xml(run_cli, hostile_model):
    code, out, _ = run_cli("check", hostile_model, "--max-layer-gmacs", "0.000000001", "--format", "junit")
    assert code == 1
    root = ElementTree.fromstring(out.split("\n", 1)[1])
    assert root.get("failures") == "1"
    assert "\\x1b[31mRED\\x07" in root.find(".//failure").text


@pytest.mark.parametrize("fmt", ["table", "md", "github"])
def test_check_text_formats_escape_control_characters(run_cli, hostile_model, fmt):
    code, out, _ = run_cli("check", hostile_model, "--max-layer-gmacs", "0.000000001", "--format", fmt)
    assert code == 1
    _no_raw_controls(out)


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_analyze_escapes_control_characters(run_cli, hostile_model, fmt):
    code, out, _ = run_cli("analyze", hostile_model, "--format", fmt)
    assert code == 0
    _no_raw_controls(out)
    assert "x0asegcost: error: fake" in out   # shown, escaped (Markdown also doubles the backslash)


def test_plain_text_leaves_printable_text_alone():
    from segcost.reports.tables import plain_text

    assert plain_text("encoder.layer1/conv_0 ü µs") == "encoder.layer1/conv_0 ü µs"
    assert plain_text("a\tb\x85c") == "a\\x09b\\x85c"
