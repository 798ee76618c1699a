"""Options shared by several commands (imports only click, like every commands module)."""

from __future__ import annotations

import click

TRUST_FLAG = "--trust-model-code"
_META_KEY = "segcost.trust_model_code"


def _remember_trust(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[_META_KEY] = True   # ctx.meta is shared with the group's context: read by trusts_model_code()


def trust_model_code_option(function):
    """``--trust-model-code``: let MODEL be an input that runs code when loaded (PyTorch inputs)."""
    return click.option(TRUST_FLAG, is_flag=True, expose_value=False, callback=_remember_trust,
                        help="Allow MODEL to be a PyTorch input, which runs its code: a .pt2 file is unpickled, "
                             "a .pt/.pth TorchScript file runs its scripted code, a package.module:factory spec "
                             "imports and calls Python. ONNX files are data and never need this.")(function)


def trusts_model_code() -> bool:
    """True when the running command was given --trust-model-code."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.meta.get(_META_KEY))
