"""A command's outputs, checked together against its inputs before the first write.

`OutputPlan.check` takes all output paths of a command and all its input paths, and refuses,
before anything is written, an output that is the same file as an input (same device and
inode, so through symlinks and hard links), two outputs that are one file, an output that is
a directory, a block device or a socket, an output whose directory does not exist, and "-"
(which means stdout to a Unix user, and would otherwise create a file named "-").
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from segcost.errors import InputError
from segcost.fileio.paths import PathLike
from segcost.fileio.protected import file_identity, forget_read_inputs, labelled_paths, refuse_same_file
from segcost.fileio.writes import Destination, destination, write_atomic


@dataclass(frozen=True)
class OutputPlan:
    """The outputs of one command, checked together against its inputs before the first write.

    Build it with `OutputPlan.check` at the start of a command; write with `plan.write`.
    """

    outputs: tuple[tuple[str, Destination], ...]
    inputs: Mapping[str, tuple[str, ...]]

    @classmethod
    def check(cls, outputs: Mapping[str, PathLike | None], inputs: Mapping[str, Any] | Iterable[Any] = ()
              ) -> OutputPlan:
        """Validate every output (see `destination`) against every input and against each other.

        Args:
            outputs: {label: path} of everything the command may write ("-o", "--report"); None is skipped.
            inputs: {label: path, paths or None} of everything it reads (model, config, baseline,
                profile, calibration data, sweep spec).

        Raises:
            InputError: naming the output and the clash; nothing has been written.
        """
        forget_read_inputs()   # a new command: only what it loads from now on is its input
        planned: list[tuple[str, Destination]] = []
        grouped: dict[str, tuple[str, ...]] = {}
        for input_label, source in labelled_paths(inputs):
            grouped[input_label] = (*grouped.get(input_label, ()), source)
        for label, path in outputs.items():
            if path is None:
                continue
            if os.fspath(path) == "-":   # the Unix "stdout" convention: never a file named "-" by surprise
                raise InputError(f"{label} -: segcost does not write to stdout through '-'; leave {label} out to "
                                 f"print the report, or name a file (./- for a file called '-')")
            place = destination(path, label)
            refuse_same_file(path, grouped, label)
            for other_label, other in planned:
                same_new = place.kind == "new" and place.real == other.real
                same_file = place.kind in ("file", "fifo") and file_identity(place.real) == file_identity(other.real)
                if same_new or same_file:
                    raise InputError(f"{os.fspath(path)} ({label}) and {other.path} ({other_label}) are the same "
                                     "file; give different outputs")
            planned.append((label, place))
        return cls(tuple(planned), grouped)

    def write(self, path: PathLike, data: str | bytes | Iterable[str | bytes]) -> None:
        """Write one planned output (`write_atomic`, with the inputs checked again).

        Every planned output is checked again first, against the files the model loader has opened
        since the plan was made (a model's external data): no output is written when any would
        replace one.
        """
        self.recheck()
        write_atomic(path, data, protected=self.inputs)

    def recheck(self) -> None:
        """Every planned output checked again against the files read since the plan was made (a model's
        external data); call it right after loading to refuse a clash before the work. Raises InputError."""
        for label, place in self.outputs:
            refuse_same_file(place.path, (), label)
