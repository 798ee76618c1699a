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
