"""TIDL support rule sets: `segcost/targets/tidl-rules.toml` read into `RuleSet` objects.

The table is data, one rule set per documented toolchain version, each key quoting the
sentence of TI's document it transcribes; segcost.passes.verify_target checks every key.
`load_rules` refuses a key no check reads (and a missing one), so a restriction written
into the table cannot go silently unchecked; restrictions the documents state that no key
checks are listed per set in `not_enforced`, each with the reason.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from dataclasses import dataclass, fields
from functools import cache

from segcost.errors import InputError
from segcost.passes.target_patterns import PATTERNS

__all__ = ["Finding", "RuleSet", "load_rules", "rule_set_names"]

_TABLE_ONLY_KEYS = {"inherit"}


@dataclass(frozen=True)
class Finding:
    """Layer `layer` (an `op_type` node) breaks `rule` of a rule set: it runs on the fallback core."""

    layer: str
    op_type: str
    rule: str
    reason: str


@dataclass(frozen=True)
class RuleSet:
    """One documented toolchain version's support table (tidl-rules.toml quotes each key's source).

    Kernel/stride forms are "KHxKWsS"; axes are as the document writes them (normalized by
    the input's rank when compared).

    Attributes:
        name, description, source: the set's own name (aliases resolved), what it is, its document.
        depthwise: allowed depthwise Conv forms.
        conv_transpose, conv_transpose_groups: allowed ConvTranspose forms and groups.
        conv_transpose_dilated: a dilated ConvTranspose runs.
        max_kernel_at_stride2: largest (non-depthwise) Conv kernel side at stride 2.
        even_conv_kernels: even-sized Conv kernels run.
        large_stride_forms: the only Conv forms allowed at a stride above 2 (besides patch embedding).
        patch_embedding: an NxN Conv at stride N runs (whatever N, even or not).
        equal_strides: Conv strides must be equal along H and W.
        dilated_conv_at_stride: a dilated Conv runs with a stride above 1.
        resize_modes: allowed Resize/Upsample modes.
        resize_power_of_two_scales: every resized axis scales by a power of two.
        resize_axes: the only axes a Resize may change (document's axes).
        resize_symmetric: the H and W scales must be equal.
        resize_downscale: a scale below 1 runs.
        resize_coordinate_modes: allowed Resize coordinate_transformation_mode values (empty: any).
        resize_nearest_modes: (coordinate mode, nearest_mode) pairs: a 'nearest' Resize with that
            coordinate mode runs only with that nearest_mode; TOML: a table.
        resize_linear_asymmetric: a 'linear' Resize with 'asymmetric' coordinates runs.
        resize_default_attributes: Resize antialias, exclude_outside, keep_aspect_ratio_policy
            must be their defaults.
        argmax_axes, softmax_axes: allowed axes (document's form).
        argmax_default_attributes: ArgMax keepdims and select_last_index must be their defaults.
        concat_axes: allowed Concat axes (empty: any axis).
        pad_modes, pad_axes: allowed Pad modes and padded axes (empty: any).
        depth_to_space_blocksizes: allowed DepthToSpace block sizes (empty: no limit).
        global_pool_max_plane: largest H·W of a GlobalAveragePool input (0: no limit).
        pool_dilated: a dilated MaxPool/AveragePool runs.
        rank4_ops: op types whose input must be rank 4.
        channelwise_constant_ops: op types that run only as `x op c`, c a constant that is a scalar
            or varies along one of `constant_operand_axes` only.
        constant_operand_axes: the axes (document's form) such a constant may vary along.
        layer_norm_axes: the axes a LayerNormalization must normalize, all of them and no other.
        layer_norm_vector_params: LayerNormalization scale/bias must be [N] or [1, N].
        max_variable_dims: (op type, N) pairs: the op's computed inputs have at most N dims
            that are not 1 (TI: "non-singleton variable input dimensions"); TOML: a table.
        ops: op types (default domain) the accelerator runs; None: all.
        fused_patterns: op sequences imported as one layer (segcost.passes.target_patterns.PATTERNS).
        not_enforced: documented restrictions no key checks, each with the reason.
    """

    name: str
    description: str
    source: str
    depthwise: frozenset[str]
    conv_transpose: frozenset[str]
    conv_transpose_groups: frozenset[int]
    conv_transpose_dilated: bool
    max_kernel_at_stride2: int
    even_conv_kernels: bool
    large_stride_forms: frozenset[str]
    patch_embedding: bool
    equal_strides: bool
    dilated_conv_at_stride: bool
    resize_modes: frozenset[str]
    resize_power_of_two_scales: bool
    resize_axes: tuple[int, ...]
    resize_symmetric: bool
    resize_downscale: bool
    resize_coordinate_modes: frozenset[str]
    resize_nearest_modes: tuple[tuple[str, str], ...]
    resize_linear_asymmetric: bool
    resize_default_attributes: bool
    argmax_axes: tuple[int, ...]
    softmax_axes: tuple[int, ...]
    argmax_default_attributes: bool
    concat_axes: tuple[int, ...]
    pad_modes: frozenset[str]
    pad_axes: tuple[int, ...]
    depth_to_space_blocksizes: frozenset[int]
    global_pool_max_plane: int
    pool_dilated: bool
    rank4_ops: frozenset[str]
    channelwise_constant_ops: frozenset[str]
    constant_operand_axes: tuple[int, ...]
    layer_norm_axes: tuple[int, ...]
    layer_norm_vector_params: bool
    max_variable_dims: tuple[tuple[str, int], ...]
    ops: frozenset[str] | None
    fused_patterns: frozenset[str]
    not_enforced: tuple[str, ...]


@cache
def _rules_file() -> dict:
    text = importlib.resources.files("segcost.targets").joinpath("tidl-rules.toml").read_text()
    return tomllib.loads(text)


def rule_set_names() -> list[str]:
    """Rule set names and aliases `load_rules` accepts."""
    data = _rules_file()
    return sorted([*data["rulesets"], *data.get("aliases", {})])


@cache
def load_rules(name: str = "current") -> RuleSet:
    """The rule set `name` (or alias: "current", "legacy") with inherited keys resolved.

    Raises:
        InputError: unknown name, or the table has a key no check reads (so no rule can be
            written down and silently ignored) or lacks one, or a table-valued key is malformed.
    """
    data = _rules_file()
    resolved = data.get("aliases", {}).get(name, name)
    if resolved not in data["rulesets"]:
        raise InputError(f"unknown rule set {name!r} (known: {', '.join(rule_set_names())})")
    table: dict = {}
    chain = [resolved]
    while "inherit" in data["rulesets"][chain[-1]]:
        chain.append(data["rulesets"][chain[-1]]["inherit"])
    for link in reversed(chain):
        table.update(data["rulesets"][link])
    known = {item.name for item in fields(RuleSet)} - {"name"}
    unknown, missing = set(table) - known - _TABLE_ONLY_KEYS, known - set(table)
    if unknown or missing:
        raise InputError(f"tidl-rules.toml rule set {resolved!r}: unknown keys {sorted(unknown)}, "
                         f"missing keys {sorted(missing)}")
    values = {key: value for key, value in table.items() if key not in _TABLE_ONLY_KEYS}
    for item in fields(RuleSet):
        if item.name in values and isinstance(values[item.name], list):
            kind = str(item.type)
            values[item.name] = tuple(values[item.name]) if kind.startswith("tuple") else frozenset(values[item.name])
    tables: tuple[tuple[str, type], ...] = (("max_variable_dims", int), ("resize_nearest_modes", str))
    for table_key, value_type in tables:
        pairs = values[table_key]
        valid = isinstance(pairs, dict) and all(
            isinstance(v, value_type) and (v > 0 if isinstance(v, int) else v != "") for v in pairs.values())
        if not valid:
            raise InputError(f"tidl-rules.toml rule set {resolved!r}: {table_key} must be a table of "
                             f"{'positive integers' if value_type is int else 'names'}")
        values[table_key] = tuple(sorted(pairs.items()))
    ops = values.pop("ops")
    strange = set(values["fused_patterns"]) - set(PATTERNS)
    if strange:
        raise InputError(f"tidl-rules.toml rule set {resolved!r}: unknown fused_patterns {sorted(strange)} "
                         f"(known: {', '.join(PATTERNS)})")
    return RuleSet(name=resolved, ops=None if ops == "*" else frozenset(ops), **values)
