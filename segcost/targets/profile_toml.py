"""Target profiles as TOML text: validated parsing (`parse_profile`), writing (`profile_to_toml`),
the trailing source comments every parameter carries (`read_comments`), and profiles by name
or path (`load_profile`, `profile_text`, `builtin_profiles`).

The dataclasses are in segcost.targets.profile, which imports nothing of this module; this
module is the file format and the files.
"""

from __future__ import annotations

import importlib.resources
import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import check_path_text
from segcost.fileio.reads import parse_toml, read_text_file
from segcost.passes.verify_conv import load_rules
from segcost.targets.device_terms import GROUPED_TILINGS
from segcost.targets.profile import (
    DTYPE_BYTES,
    MAC_KINDS,
    TRANSPOSED,
    FallbackDevice,
    MemoryLevel,
    TargetProfile,
)

__all__ = ["builtin_profiles", "load_profile", "parse_profile", "profile_text", "profile_to_toml", "read_comments"]


def read_comments(text: str) -> dict[str, str]:
    """Trailing comments of `key = value  # comment` lines, by key path ("accelerator.clock_ghz", "memory[1].name")."""
    comments: dict[str, str] = {}
    section, memory_index = "", -1
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("[["):
            memory_index += 1
            section = f"{line.strip('[] ')}[{memory_index}]"
            continue
        if line.startswith("["):
            section = line.strip("[] ")
            continue
        key, equals, rest = line.partition("=")
        comment = _trailing_comment(rest)
        if equals and comment and key.strip().isidentifier():
            comments[f"{section}.{key.strip()}" if section else key.strip()] = comment
    return comments


def _trailing_comment(value_text: str) -> str | None:
    quote = None
    for index, char in enumerate(value_text):
        if quote:
            quote = None if char == quote and value_text[index - 1] != "\\" else quote
        elif char in "\"'":
            quote = char
        elif char == "#":
            return value_text[index + 1:].strip() or None
    return None


def parse_profile(text: str, where: str = "profile") -> TargetProfile:
    """Validate a profile's TOML text; every problem is one InputError naming `where` and the key."""
    data = parse_toml(text, where, "target profile")
    reader = _Reader(where)
    reader.keys(data, "", {"profile", "accelerator", "memory", "support", "fallback"}, {"profile", "accelerator",
                                                                                       "memory"})
    meta = reader.table(data, "profile", {"name", "description"}, {"name"})
    accel = reader.table(data, "accelerator", {"clock_ghz", "macs_per_cycle", "dtype", "align_width", "efficiency",
                                               "vector_flops_per_cycle", "layer_overhead_cycles", "run_overhead_us",
                                               "unaligned_efficiency", "unaligned_vector_efficiency",
                                               "unaligned_depthwise_efficiency", "memory_overlap",
                                               "grouped_row_overhead_pixels", "grouped_tiling",
                                               "taps_in_reduction", "host_io_bytes_per_cycle", "host_dtype"},
                         {"clock_ghz", "macs_per_cycle", "dtype", "align_width", "efficiency",
                          "vector_flops_per_cycle", "layer_overhead_cycles"})
    efficiency_table = reader.table(accel, "accelerator.efficiency", {*MAC_KINDS, TRANSPOSED}, set(MAC_KINDS),
                                    key="efficiency")
    efficiency = {kind: reader.fraction(efficiency_table, f"accelerator.efficiency.{kind}", kind)
                  for kind in MAC_KINDS}
    efficiency[TRANSPOSED] = reader.fraction(efficiency_table, f"accelerator.efficiency.{TRANSPOSED}", TRANSPOSED) \
        if TRANSPOSED in efficiency_table else efficiency["dense"]
    support = reader.table(data, "support", {"rules", "ops", "free_ops", "fused_activations_free",
                                             "fused_into_conv_ops", "blocked_layout", "path_channel_multiple",
                                             "skips_padding_taps"}, set()) if "support" in data else {}
    ops = support.get("ops", "*")
    if ops != "*" and not (isinstance(ops, list) and all(isinstance(op, str) for op in ops)):
        raise InputError(f"{where}: support.ops must be \"*\" or a list of op type names")
    for key in ("free_ops", "fused_into_conv_ops"):
        names = support.get(key, [])
        if not (isinstance(names, list) and all(isinstance(op, str) for op in names)):
            raise InputError(f"{where}: support.{key} must be a list of op type names")
    rules = support.get("rules")
    if rules is not None and "ops" in support:
        raise InputError(f"{where}: give support.rules or support.ops, not both (a rule set lists its ops, so "
                         "that `segcost verify` and the cost model read one table)")
    if rules is not None:
        if not isinstance(rules, str):
            raise InputError(f"{where}: support.rules must be a rule set name")
        try:
            load_rules(rules)
        except InputError as error:
            raise InputError(f"{where}: support.rules: {error}") from None
    fused_free = support.get("fused_activations_free", True)
    blocked_layout = support.get("blocked_layout", False)
    skips_padding_taps = support.get("skips_padding_taps", False)
    for key, value in (("fused_activations_free", fused_free), ("blocked_layout", blocked_layout),
                       ("skips_padding_taps", skips_padding_taps)):
        if not isinstance(value, bool):
            raise InputError(f"{where}: support.{key} must be true or false")
    dtype = reader.dtype(accel, "accelerator.dtype")
    clock = reader.positive(accel, "accelerator.clock_ghz")
    return TargetProfile(
        name=reader.string(meta, "profile.name"), description=str(meta.get("description", "")),
        clock_ghz=clock, macs_per_cycle=reader.positive(accel, "accelerator.macs_per_cycle"), dtype=dtype,
        align_width=int(reader.positive(accel, "accelerator.align_width", integer=True)), efficiency=efficiency,
        vector_flops_per_cycle=reader.positive(accel, "accelerator.vector_flops_per_cycle"),
        memory=_memory_levels(reader, data["memory"], clock),
        layer_overhead_cycles=reader.non_negative(accel, "accelerator.layer_overhead_cycles"),
        run_overhead_us=reader.non_negative(accel, "accelerator.run_overhead_us") if "run_overhead_us" in accel
        else 0.0,
        grouped_row_overhead_pixels=reader.non_negative(accel, "accelerator.grouped_row_overhead_pixels")
        if "grouped_row_overhead_pixels" in accel else 0.0,
        memory_overlap=reader.share(accel, "accelerator.memory_overlap") if "memory_overlap" in accel else 1.0,
        grouped_tiling=_choice(where, accel, "grouped_tiling", GROUPED_TILINGS),
        taps_in_reduction=_flag(where, accel, "taps_in_reduction"),
        host_io_bytes_per_cycle=reader.non_negative(accel, "accelerator.host_io_bytes_per_cycle")
        if "host_io_bytes_per_cycle" in accel else 0.0,
        host_dtype=reader.dtype(accel, "accelerator.host_dtype", name="host_dtype") if "host_dtype" in accel
        else "float32",
        **{key: reader.fraction(accel, f"accelerator.{key}", key) for key in (
            "unaligned_efficiency", "unaligned_vector_efficiency", "unaligned_depthwise_efficiency")
            if key in accel},
        fused_activations_free=fused_free, supported_ops=None if ops == "*" else frozenset(ops),
        free_ops=frozenset(support.get("free_ops", [])),
        fused_into_conv_ops=frozenset(support.get("fused_into_conv_ops", [])), blocked_layout=blocked_layout,
        path_channel_multiple=int(reader.positive(support, "support.path_channel_multiple", integer=True))
        if "path_channel_multiple" in support else None, skips_padding_taps=skips_padding_taps,
        rules=rules,
        fallback=_fallback(reader, data["fallback"]) if "fallback" in data else None, source=where,
    )


def _flag(where: str, table: dict, key: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise InputError(f"{where}: accelerator.{key} must be true or false")
    return value


def _choice(where: str, table: dict, key: str, allowed: tuple[str, ...]) -> str:
    value = table.get(key, allowed[0])
    if value not in allowed:
        raise InputError(f"{where}: accelerator.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _memory_levels(reader: _Reader, levels: Any, clock_ghz: float) -> tuple[MemoryLevel, ...]:
    if not isinstance(levels, list) or not levels or not all(isinstance(level, dict) for level in levels):
        raise InputError(f"{reader.where}: [[memory]] must be a list of tables, innermost level first")
    result: list[MemoryLevel] = []
    for index, level in enumerate(levels):
        key = f"memory[{index}]"
        reader.keys(level, key, {"name", "capacity_kb", "bytes_per_cycle", "gbytes_per_s"}, {"name"})
        last = index == len(levels) - 1
        if last == ("capacity_kb" in level):
            raise InputError(f"{reader.where}: {key}: every level but the last needs capacity_kb, and the last "
                             "(external memory) must have none")
        if ("bytes_per_cycle" in level) == ("gbytes_per_s" in level):
            raise InputError(f"{reader.where}: {key}: give exactly one of bytes_per_cycle and gbytes_per_s")
        bandwidth = (reader.positive(level, f"{key}.bytes_per_cycle", name="bytes_per_cycle")
                     if "bytes_per_cycle" in level
                     else reader.positive(level, f"{key}.gbytes_per_s", name="gbytes_per_s") / clock_ghz)
        capacity = None if last else int(reader.positive(level, f"{key}.capacity_kb", name="capacity_kb") * 1024)
        if result and capacity is not None and capacity <= (result[-1].capacity_bytes or 0):
            raise InputError(f"{reader.where}: {key}.capacity_kb must be larger than the level before it")
        result.append(MemoryLevel(reader.string(level, f"{key}.name", name="name"), capacity, bandwidth))
    return tuple(result)


def _fallback(reader: _Reader, table: Any) -> FallbackDevice:
    names = {item.name for item in fields(FallbackDevice)}
    reader.keys(table, "fallback", names, names)
    positive = {name: reader.positive(table, f"fallback.{name}", name=name)
                for name in ("clock_ghz", "macs_per_cycle", "flops_per_cycle", "bytes_per_cycle",
                             "transfer_gbytes_per_s")}
    return FallbackDevice(
        name=reader.string(table, "fallback.name", name="name"), efficiency=reader.fraction(
            table, "fallback.efficiency", "efficiency"), dtype=reader.dtype(table, "fallback.dtype", name="dtype"),
        layer_overhead_cycles=reader.non_negative(table, "fallback.layer_overhead_cycles",
                                                  name="layer_overhead_cycles"),
        transfer_overhead_us=reader.non_negative(table, "fallback.transfer_overhead_us", name="transfer_overhead_us"),
        **positive)


# Every rate, size and count of a profile lies in this range (in the profile's units: GHz, MACs per
# cycle, bytes per cycle, GB/s, KiB). A "positive" clock_ghz of 5e-324 made every latency Infinity and
# the JSON reports invalid; real devices are many orders of magnitude inside both ends.
POSITIVE_RANGE = (1e-6, 1e9)


class _Reader:
    """Typed access to TOML tables that raises one clear InputError per problem."""

    def __init__(self, where: str):
        self.where = where

    def keys(self, table: Any, path: str, allowed: set[str], required: set[str]) -> None:
        if not isinstance(table, dict):
            raise InputError(f"{self.where}: {path or 'the file'} must be a table")
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise InputError(f"{self.where}: unknown key {(path + '.' if path else '') + unknown[0]!r} "
                             f"(known: {', '.join(sorted(allowed))})")
        missing = sorted(required - set(table))
        if missing:
            raise InputError(f"{self.where}: missing key {(path + '.' if path else '') + missing[0]!r}")

    def table(self, parent: dict, path: str, allowed: set[str], required: set[str], key: str | None = None) -> dict:
        value = parent[key or path]
        self.keys(value, path, allowed, required)
        return value

    def _number(self, table: dict, path: str, name: str | None) -> float:
        value = table[name or path.rsplit(".", 1)[-1]]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f"{self.where}: {path} must be a number, got {value!r}")
        return float(value)

    def positive(self, table: dict, path: str, name: str | None = None, integer: bool = False) -> float:
        value = self._number(table, path, name)
        if value <= 0 or (integer and not value.is_integer()):
            raise InputError(f"{self.where}: {path} must be a positive {'integer' if integer else 'number'}, "
                             f"got {value:g}")
        low, high = POSITIVE_RANGE
        if not low <= value <= high:
            raise InputError(f"{self.where}: {path} = {value:g} is outside [{low:g}, {high:g}], the range of a real "
                             f"device (a value this far out makes latencies overflow to infinity)")
        return value

    def non_negative(self, table: dict, path: str, name: str | None = None) -> float:
        value = self._number(table, path, name)
        if value < 0:
            raise InputError(f"{self.where}: {path} must be >= 0, got {value:g}")
        return value

    def fraction(self, table: dict, path: str, name: str) -> float:
        # An efficiency above 1 would let a layer beat the hardware's peak: physically impossible.
        value = self._number(table, path, name)
        if not 0 < value <= 1:
            raise InputError(f"{self.where}: {path} must be in (0, 1] (a fraction of peak), got {value:g}")
        return value

    def share(self, table: dict, path: str) -> float:
        value = self._number(table, path, None)
        if not 0 <= value <= 1:
            raise InputError(f"{self.where}: {path} must be in [0, 1], got {value:g}")
        return value

    def string(self, table: dict, path: str, name: str | None = None) -> str:
        value = table[name or path.rsplit(".", 1)[-1]]
        if not isinstance(value, str) or not value:
            raise InputError(f"{self.where}: {path} must be a non-empty string")
        return value

    def dtype(self, table: dict, path: str, name: str = "dtype") -> str:
        value = table[name]
        if value not in DTYPE_BYTES:
            raise InputError(f"{self.where}: {path} {value!r} is not one of {', '.join(DTYPE_BYTES)}")
        return value


def profile_to_toml(profile: TargetProfile, notes: dict[str, str] | None = None, header: str = "") -> str:
    """Serialize `profile` as TOML that `parse_profile` reads back; `notes` maps a key path to its comment."""
    notes = notes or {}

    def line(path: str, key: str, value: Any) -> str:
        text = f"{key} = {_toml_value(value)}"
        return f"{text:<40} # {notes[path]}" if path in notes else text

    defaults = {item.name: item.default for item in fields(TargetProfile)}
    out = [f"# {row}" if row else "#" for row in header.splitlines()]
    out += ["[profile]", line("profile.name", "name", profile.name),
            line("profile.description", "description", profile.description), "", "[accelerator]"]
    for key in ("clock_ghz", "macs_per_cycle", "dtype", "align_width", "vector_flops_per_cycle",
                "layer_overhead_cycles", "run_overhead_us", "unaligned_efficiency", "unaligned_vector_efficiency",
                "unaligned_depthwise_efficiency", "memory_overlap", "grouped_row_overhead_pixels", "grouped_tiling",
                "taps_in_reduction", "host_io_bytes_per_cycle", "host_dtype"):
        value = getattr(profile, key)
        if value is not None and value != defaults.get(key):   # a default needs no line (and has no source)
            out.append(line(f"accelerator.{key}", key, value))
    out += ["", "[accelerator.efficiency]"]
    out += [line(f"accelerator.efficiency.{kind}", kind, profile.efficiency[kind]) for kind in (*MAC_KINDS, TRANSPOSED)]
    for index, level in enumerate(profile.memory):
        out += ["", "[[memory]]", line(f"memory[{index}].name", "name", level.name)]
        if level.capacity_bytes is not None:
            out.append(line(f"memory[{index}].capacity_kb", "capacity_kb", level.capacity_bytes / 1024))
        out.append(line(f"memory[{index}].bytes_per_cycle", "bytes_per_cycle", level.bytes_per_cycle))
    out += ["", "[support]", line("support.fused_activations_free", "fused_activations_free",
                                  profile.fused_activations_free)]
    if profile.rules is None:
        out.append(line("support.ops", "ops", "*" if profile.supported_ops is None else sorted(profile.supported_ops)))
    out.append(line("support.free_ops", "free_ops", sorted(profile.free_ops)))
    out.append(line("support.fused_into_conv_ops", "fused_into_conv_ops", sorted(profile.fused_into_conv_ops)))
    if profile.blocked_layout:
        out.append(line("support.blocked_layout", "blocked_layout", True))
    if profile.skips_padding_taps:
        out.append(line("support.skips_padding_taps", "skips_padding_taps", True))
    if profile.path_channel_multiple is not None:
        out.append(line("support.path_channel_multiple", "path_channel_multiple", profile.path_channel_multiple))
    if profile.rules is not None:
        out.append(line("support.rules", "rules", profile.rules))
    if profile.fallback is not None:
        out += ["", "[fallback]"]
        out += [line(f"fallback.{item.name}", item.name, getattr(profile.fallback, item.name))
                for item in fields(FallbackDevice)]
    return "\n".join(out) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(float(f"{value:.8g}"))   # 8 significant digits: exact enough, short enough to read
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


# -- profiles by name or path (built-in ones ship in segcost/targets/profiles/) --------------
def builtin_profiles() -> list[str]:
    folder = importlib.resources.files("segcost.targets").joinpath("profiles")
    return sorted(entry.name[:-5] for entry in folder.iterdir() if entry.name.endswith(".toml"))


def load_profile(name_or_path: str | TargetProfile) -> TargetProfile:
    """A built-in profile by name ("tda4vm", "am62a", "cpu") or a profile TOML file by path."""
    if isinstance(name_or_path, TargetProfile):
        return name_or_path
    text, where = _profile_source(str(name_or_path))
    return parse_profile(text, where)


def profile_text(name_or_path: str) -> str:
    """The TOML text of a built-in profile or profile file (with its comments)."""
    return _profile_source(name_or_path)[0]


def _profile_source(name_or_path: str) -> tuple[str, str]:
    if name_or_path in builtin_profiles():
        resource = importlib.resources.files("segcost.targets").joinpath("profiles", f"{name_or_path}.toml")
        return resource.read_text(), f"profile {name_or_path!r}"
    path = Path(check_path_text(name_or_path, "target profile"))
    if path.suffix != ".toml" and not os.path.lexists(path):
        raise InputError(f"unknown target {name_or_path!r} (built-in: {', '.join(builtin_profiles())}; "
                         "or give a profile .toml file)")
    # one reader for every config-like file: a regular file under a size cap (a FIFO or /dev/zero is refused)
    return read_text_file(path, "target profile"), str(path)
