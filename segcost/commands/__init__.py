"""Command groups that live in their own modules, added to the `segcost` CLI.

Each module listed in COMMAND_MODULES defines ``COMMANDS: list[click.Command]``. Modules
import only click at module level (the heavy imports happen inside the commands), so
adding them costs the CLI's start-up nothing measurable.
"""

from __future__ import annotations

import importlib

import click

COMMAND_MODULES = ("segcost.commands.analyze", "segcost.commands.optimize", "segcost.commands.verify",
                   "segcost.commands.target", "segcost.commands.check", "segcost.commands.sweep",
                   "segcost.commands.zoo", "segcost.commands.ops")


def add_commands(group: click.Group) -> None:
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name == module_name:
                continue  # not written yet
            raise
        for command in module.COMMANDS:
            group.add_command(command)
