"""Target profiles: built-ins load, round-trip through TOML, and bad files fail with one clear message."""

from __future__ import annotations

import dataclasses

import pytest

from segcost.errors import InputError
from segcost.targets.profile_toml import (
    builtin_profiles,
    load_profile,
    parse_profile,
    profile_text,
    profile_to_toml,
    read_comments,
)

MINIMAL = """
[profile]
name = "mine"

[accelerator]
clock_ghz = 1.0
macs_per_cycle = 1024
dtype = "int8"
align_width = 32
vector_flops_per_cycle = 32
layer_overhead_cycles = 100

[accelerator.efficiency]
dense = 0.8
pointwise = 0.8
grouped = 0.5
depthwise = 0.1

[[memory]]
name = "SRAM"
capacity_kb = 512
bytes_per_cycle = 64

[[memory]]
name = "DDR"
gbytes_per_s = 8
"""


def test_builtin_profiles_load_and_round_trip():
    assert {"tda4vm", "am62a", "cpu"} <= set(builtin_profiles())
    for name in ("tda4vm", "am62a", "cpu"):
        profile = load_profile(name)
        assert profile.name == name
        assert all(0 < value <= 1 for value in profile.efficiency.values())
        assert profile.memory[-1].capacity_bytes is None
        assert parse_profile(profile_to_toml(profile)) == profile
        with_depthwise = dataclasses.replace(profile, unaligned_depthwise_efficiency=0.3)
        assert parse_profile(profile_to_toml(with_depthwise)) == with_depthwise


def test_tda4vm_numbers_from_the_design():
    profile = load_profile("tda4vm")
    assert (profile.macs_per_cycle, profile.clock_ghz, profile.dtype) == (4096, 1.0, "int8")
    assert [level.capacity_bytes for level in profile.memory] == [448 * 1024, 8 * 1024 * 1024, None]
    assert profile.peak_macs_per_s == 4096e9
    assert profile.rules == "current" and profile.fallback is not None
    assert load_profile("am62a").macs_per_cycle == 1024


def test_every_builtin_parameter_says_where_it_comes_from():
    scalar_keys = {"clock_ghz", "macs_per_cycle", "dtype", "align_width", "vector_flops_per_cycle",
                   "layer_overhead_cycles", "capacity_kb", "bytes_per_cycle", "gbytes_per_s", "efficiency",
                   "flops_per_cycle", "transfer_gbytes_per_s", "transfer_overhead_us"}
    for name in ("tda4vm", "am62a", "cpu"):
        text = profile_text(name)
        comments = read_comments(text)
        for line in text.splitlines():
            key = line.partition("=")[0].strip()
            if key in scalar_keys or line.startswith(("dense", "pointwise", "grouped", "depthwise")):
                path = next((path for path in comments if path.endswith("." + key)), None)
                assert path is not None, f"{name}: {key} has no source comment"


def test_user_profile_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(MINIMAL)
    profile = load_profile(str(path))
    assert profile.name == "mine" and profile.fallback is None and profile.supported_ops is None
    assert profile.memory[1].bytes_per_cycle == 8.0       # 8 GB/s at 1 GHz
    assert profile.efficiency["transposed"] == profile.efficiency["dense"]


@pytest.mark.parametrize(("change", "message"), [
    (("macs_per_cycle = 1024", "macs_per_cycle = -1"), "accelerator.macs_per_cycle must be a positive number, got -1"),
    (("dense = 0.8", "dense = 1.5"), "accelerator.efficiency.dense must be in (0, 1]"),
    (("dtype = \"int8\"", "dtype = \"int4\""), "accelerator.dtype 'int4' is not one of"),
    (("align_width = 32", "align_width = 2.5"), "accelerator.align_width must be a positive integer"),
    (("clock_ghz = 1.0", "clock_gz = 1.0"), "unknown key 'accelerator.clock_gz'"),
    (("depthwise = 0.1\n", ""), "missing key 'accelerator.efficiency.depthwise'"),
    (("gbytes_per_s = 8", "gbytes_per_s = 8\ncapacity_kb = 9999"), "the last (external memory) must have none"),
    (("bytes_per_cycle = 64", "gbytes_per_s = 4\nbytes_per_cycle = 64"), "exactly one of bytes_per_cycle"),
    (("capacity_kb = 512", "capacity_kb = \"big\""), "memory[0].capacity_kb must be a number"),
    (("[profile]", "[profile\n"), "not valid TOML"),
    (("layer_overhead_cycles = 100", "layer_overhead_cycles = 100\n[support]\nrules = \"nope\""),
     "support.rules: unknown rule set 'nope'"),
])
def test_invalid_profiles_fail_with_one_clear_message(tmp_path, change, message):
    path = tmp_path / "bad.toml"
    old, new = change
    assert old in MINIMAL
    path.write_text(MINIMAL.replace(old, new, 1))
    with pytest.raises(InputError) as raised:
        load_profile(str(path))
    text = str(raised.value)
    assert message in text and str(path) in text
    assert "\n" not in text.strip()


def test_unknown_target_name_lists_builtins():
    with pytest.raises(InputError, match="unknown target 'tda5'.*tda4vm"):
        load_profile("tda5")
    with pytest.raises(InputError, match="no-such.toml: cannot read"):
        load_profile("no-such.toml")


def test_read_comments_ignores_hashes_in_strings():
    comments = read_comments('[profile]\nname = "a#b"  # the name\ndescription = "x"\n')
    assert comments == {"profile.name": "the name"}


def test_memory_overlap_zero_means_compute_and_memory_add_up():
    text = profile_to_toml(dataclasses.replace(load_profile("cpu"), memory_overlap=0.0))
    assert parse_profile(text).memory_overlap == 0.0
    with pytest.raises(InputError, match=r"memory_overlap must be in \[0, 1\]"):
        parse_profile(text.replace("memory_overlap = 0.0", "memory_overlap = 1.5"))
