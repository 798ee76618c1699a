"""Special-file outputs for the fuzz suite: a command's output path pointed at something the user owns.

Each case is (command, output kind, model bytes) chosen from a seeded `random.Random`, so it
is reproducible from (seed, index). `make_output` builds the output path in the case's
folder and returns what must still hold afterwards (`OutputCase.check`): the model and any
bystander file are intact unless the command was allowed to write them, FIFOs, devices and
symlinks keep their kind, no `.NAME.*.tmp` file is left, and an output that is an input is
refused (exit 2).
"""

from __future__ import annotations

import os
import random
import stat
import threading
from dataclasses import dataclass, field
from pathlib import Path

# (command line before the output option, the option that names the output)
COMMANDS = (
    (["analyze", "{model}"], "-o"),
    (["analyze", "{model}", "--format", "json"], "-o"),
    (["optimize", "{model}", "--no-check", "-o", "{work}/optimized.onnx"], "--report"),
    (["optimize", "{model}", "--no-check"], "-o"),
    (["cost", "{model}"], "-o"),
    (["check", "{model}", "--max-gmacs", "1000"], "-o"),
    (["baseline", "save", "{model}"], "-o"),
)
KINDS = ("symlink_to_bystander", "symlink_to_model", "hardlink_to_model", "the_model_itself", "fifo_with_reader",
         "symlink_to_dev_null", "char_device", "dangling_symlink", "symlink_chain", "symlink_loop", "directory",
         "missing_directory", "regular_file")
MUST_REFUSE = {"symlink_to_model", "hardlink_to_model", "the_model_itself", "symlink_loop", "directory",
               "missing_directory"}


@dataclass
class OutputCase:
    """One special-file output case and the state to check afterwards."""

    kind: str
    args: list[str]
    output: Path
    model: Path
    model_bytes: bytes
    bystander: Path | None = None
    reader: _Drain | None = None
    modes: dict[Path, int] = field(default_factory=dict)   # lstat file type of each path before the run

    def check(self, code: int, workdir: Path) -> str | None:
        """The first broken invariant, or None."""
        if self.reader is not None:
            self.reader.stop()
        if self.model.read_bytes() != self.model_bytes:
            return "the input model changed"
        for path, mode in self.modes.items():
            now = os.lstat(path).st_mode if os.path.lexists(path) else None
            if now is None or stat.S_IFMT(now) != mode:
                return f"{path.name} ({self.kind}) changed kind or disappeared"
        temps = [str(path.relative_to(workdir)) for path in workdir.rglob("*.tmp")]
        if temps:
            return f"temporary files left: {temps}"
        if self.kind in MUST_REFUSE and code != 2:
            return f"an output onto {self.kind} was not refused (exit {code})"
        if self.bystander is not None and code == 2 and self.bystander.read_text() != "bystander\n":
            return "a refused command changed the symlink's target"
        return None


class _Drain(threading.Thread):
    """Reads a FIFO without blocking its writer's open (opened O_NONBLOCK before the command runs)."""

    def __init__(self, fifo: Path):
        super().__init__(daemon=True)
        self.handle = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        self.done = threading.Event()
        self.received = 0

    def run(self) -> None:
        while not self.done.is_set():
            try:
                chunk = os.read(self.handle, 1 << 16)
                self.received += len(chunk)
                if not chunk:
                    self.done.wait(0.01)
            except BlockingIOError:
                self.done.wait(0.01)

    def stop(self) -> None:
        self.done.set()
        self.join(timeout=5)
        os.close(self.handle)


def make_output(kind: str, workdir: Path, model: Path) -> tuple[Path, Path | None, _Drain | None]:
    """Create the output path of `kind` in `workdir`; returns (output, bystander file or None, FIFO reader)."""
    output, bystander, reader = workdir / "out.report", None, None
    if kind in ("symlink_to_bystander", "dangling_symlink", "symlink_chain"):
        bystander = workdir / "keep" / "bystander.txt"
        bystander.parent.mkdir(exist_ok=True)
        if kind != "dangling_symlink":
            bystander.write_text("bystander\n")
        if kind == "symlink_chain":
            (workdir / "hop").symlink_to(Path("keep") / "bystander.txt")
            output.symlink_to("hop")
        else:
            output.symlink_to(Path("keep") / "bystander.txt")
        if kind == "dangling_symlink":
            bystander = None
    elif kind == "symlink_to_model":
        output.symlink_to(model.name)
    elif kind == "hardlink_to_model":
        os.link(model, output)
    elif kind == "the_model_itself":
        output = model
    elif kind == "fifo_with_reader":
        os.mkfifo(output)
        reader = _Drain(output)
        reader.start()
    elif kind == "symlink_to_dev_null":
        output.symlink_to("/dev/null")
    elif kind == "char_device":
        try:
            os.mknod(output, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        except OSError:
            output.symlink_to("/dev/null")   # no CAP_MKNOD: the same device through a link
    elif kind == "symlink_loop":
        output.symlink_to("out.loop")
        (workdir / "out.loop").symlink_to("out.report")
    elif kind == "directory":
        output.mkdir()
    elif kind == "missing_directory":
        output = workdir / "no-such-dir" / "out.report"
    else:
        output.write_text("old report\n")
    return output, bystander, reader


def output_case(rng: random.Random, workdir: Path, model: Path) -> OutputCase:
    """A seeded case: a command from COMMANDS with its output made by `make_output`."""
    template, option = rng.choice(COMMANDS)
    kind = rng.choice(KINDS)
    output, bystander, reader = make_output(kind, workdir, model)
    args = [part.format(model=model, work=workdir) for part in template] + [option, str(output)]
    modes = {path: stat.S_IFMT(os.lstat(path).st_mode) for path in (output, workdir / "hop", workdir / "out.loop")
             if os.path.lexists(path) and path != model}
    return OutputCase(kind, args, output, model, model.read_bytes(), bystander, reader, modes)
