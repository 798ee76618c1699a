"""A point's content hash covers all the code its result comes from, so that no stale result is reused."""

from __future__ import annotations

import networkx as nx

from segcost.sweep.points import FINGERPRINT_MODULES, FINGERPRINT_PACKAGES
from tests.test_architecture import import_graph

NO_EFFECT_ON_VALUES = ("segcost.fileio",)   # reads and writes files; computes nothing a row holds


def _fingerprinted(module: str) -> bool:
    parts = module.split(".")[1:]
    return (not parts or parts[0] in FINGERPRINT_PACKAGES or "/".join(parts) + ".py" in FINGERPRINT_MODULES
            or module.startswith(NO_EFFECT_ON_VALUES))


def test_every_module_the_sweep_task_imports_is_in_the_code_fingerprint():
    reached = nx.descendants(import_graph(), "segcost.sweep.run") | {"segcost.sweep.run"}
    assert sorted(module for module in reached if not _fingerprinted(module)) == []
