"""A sweep spec's model entries pass keyword arguments to a module:factory (as `analyze --factory-arg`)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from segcost.errors import InputError
from segcost.sweep import expand, parse_spec, read_table

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.sweep.test_sweep_factory_args:recording_factory"


def recording_factory(num_classes: int = 4, record: str = "", **keywords):
    """A 1×1 Conv to `num_classes`; writes every keyword argument it was called with to the file `record`."""
    from torch import nn

    Path(record).write_text(json.dumps({"num_classes": num_classes, "record": record, **keywords}, sort_keys=True))
    return nn.Conv2d(3, num_classes, 1).eval()


def _spec(entries: str) -> dict:
    import tomllib

    return tomllib.loads(textwrap.dedent(f"""
        measures = ["macs"]
        [axes]
        models = [{entries}]
        input_sizes = ["16x8"]
        num_classes = [3]
        """))


@pytest.mark.torch
def test_a_sweep_calls_the_factory_with_its_entrys_arguments(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(REPO)   # the sweep's search path for the factory's module
    record = tmp_path / "kwargs.json"
    spec = tmp_path / "sweep.toml"
    spec.write_text(textwrap.dedent(f"""
        measures = ["macs"]
        [axes]
        models = [{{ model = "{FACTORY}", factory_args = ["record={str(record)!r}", "weights=None",
                    "scale=(1, 2)", "mode=bilinear"] }}]
        input_sizes = ["16x8"]
        num_classes = [3]
        """))
    output = tmp_path / "res.csv"
    code, _, err = run_cli("sweep", str(spec), "-o", str(output), "--workers", "1", "-q", "--trust-model-code")
    assert code == 0, err
    # literals as Python values, anything else a string (as --factory-arg); num_classes from the axis
    assert json.loads(record.read_text()) == {"num_classes": 3, "record": str(record), "weights": None,
                                              "scale": [1, 2], "mode": "bilinear"}
    (row,) = read_table(output)
    assert row["status"] == "ok" and row["macs"] == 3 * 3 * 8 * 16
    assert row["factory_args"] == f"mode=bilinear;record={str(record)!r};scale=(1, 2);weights=None"   # by key


def test_entries_that_differ_only_in_factory_args_are_different_points():
    spec = parse_spec(_spec(f'{{ model = "{FACTORY}", factory_args = ["weights=None"] }}, '
                            f'{{ model = "{FACTORY}", factory_args = ["weights=\'DEFAULT\'"] }}, "{FACTORY}"'))
    points = expand(spec, "test-fingerprint", search_path=str(REPO)).points
    assert [point.factory_args for point in points] == [("weights=None",), ("weights='DEFAULT'",), ()]
    assert len({point.key for point in points}) == 3 and len({point.build_key for point in points}) == 3


def test_the_same_factory_args_in_another_order_are_the_same_point():
    """Keyword arguments have no order (breaker10 R6: each order was a point of its own, computed twice)."""
    orders = ('["weights=None", "mode=\'a\'"]', '["mode=\'a\'", "weights=None"]')
    points = [expand(parse_spec(_spec(f'{{ model = "{FACTORY}", factory_args = {order} }}')), "test-fingerprint",
                     search_path=str(REPO)).points[0] for order in orders]
    assert points[0].factory_args == points[1].factory_args == ("mode='a'", "weights=None")
    assert points[0].key == points[1].key   # one cache entry
    with pytest.raises(InputError, match="repeats an earlier entry"):   # both in one spec: one point twice
        parse_spec(_spec(", ".join(f'{{ model = "{FACTORY}", factory_args = {order} }}' for order in orders)))


@pytest.mark.parametrize("entry, message", [
    ('{ model = "X:f", factory_args = "weights=None" }', "factory_args must be a non-empty list"),
    ('{ model = "X:f", factory_args = [1] }', "expected \"KEY=VALUE\" strings"),
    ('{ model = "X:f", factory_args = ["weights"] }', "factory_args[0]: --factory-arg 'weights': expected KEY=VALUE"),
    ('{ model = "X:f", factory_args = ["2x=1"] }', "factory_args[0]: --factory-arg '2x=1'"),
    ('{ model = "X:f", factory_args = ["num_classes=3"] }', "num_classes comes from the num_classes axis"),
    ('{ model = "X:f", factory_args = ["width_mult=2"] }', "width_mult comes from the width_multipliers axis"),
    ('{ model = "X:f", factory_args = ["a=1", "a = 2"] }', "lists 'a' more than once"),
    ('{ model = "MobileNetV2+UNetLite", factory_args = ["a=1"] }', "only a package.module:factory model"),
])
def test_factory_args_are_checked_when_the_spec_is_read(entry, message):
    with pytest.raises(InputError, match="axes.models\\[0\\].factory_args") as error:
        parse_spec(_spec(entry), "s.toml")
    assert message in str(error.value)


def swallowing_factory(classes: int = 1, **keywords):
    """segmentation_models_pytorch's form: the class count is `classes=`; other keywords are taken and ignored."""
    from torch import nn

    return nn.Conv2d(3, classes, 1).eval()


def widening_factory(num_classes: int = 4, **keywords):
    """A factory that uses width_mult although it takes it through **kwargs: 8·width_mult hidden channels."""
    from torch import nn

    hidden = max(1, round(8 * keywords.get("width_mult", 1.0)))
    return nn.Sequential(nn.Conv2d(3, hidden, 1), nn.Conv2d(hidden, num_classes, 1)).eval()


def _run_sweep(run_cli, tmp_path, monkeypatch, factory: str, entry: str, axes: str = "") -> list[dict]:
    monkeypatch.chdir(REPO)   # the sweep's search path for the factory's module
    spec = tmp_path / f"{factory}.toml"
    spec.write_text(textwrap.dedent(f"""
        measures = ["macs"]
        [axes]
        models = [{{ model = "tests.sweep.test_sweep_factory_args:{factory}", {entry} }}]
        input_sizes = ["16x8"]
        """) + axes)
    output = tmp_path / f"{factory}.csv"
    run_cli("sweep", str(spec), "-o", str(output), "--workers", "1", "-q", "--trust-model-code")
    return read_table(output)


@pytest.mark.torch
def test_a_num_classes_the_factory_ignores_is_an_error_row_not_a_mislabelled_model(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    rows = _run_sweep(run_cli, tmp_path, monkeypatch, "swallowing_factory", 'num_classes = [3, 19]')
    assert [row["status"] for row in rows] == ["error", "error"]
    assert all("num_classes=" in row["error"] and "1 channels" in row["error"] for row in rows)


@pytest.mark.torch
def test_a_width_the_factory_ignores_is_an_error_row_and_one_it_uses_is_measured(run_cli, tmp_path, monkeypatch):
    pytest.importorskip("torch")
    ignored = _run_sweep(run_cli, tmp_path, monkeypatch, "swallowing_factory", "width_multipliers = [0.5]")
    assert [row["status"] for row in ignored] == ["error"] and "width_mult=0.5" in ignored[0]["error"]
    used = _run_sweep(run_cli, tmp_path, monkeypatch, "widening_factory", "width_multipliers = [0.5, 2.0]",
                      "num_classes = [4]\n")
    assert [row["status"] for row in used] == ["ok", "ok"]
    assert [row["macs"] for row in used] == [(3 * 4 + 4 * 4) * 128, (3 * 16 + 16 * 4) * 128]
