"""Ctrl-C always stops segcost: one line, exit 130, no traceback.

Python delivers SIGINT as KeyboardInterrupt only when the main thread returns to the
interpreter loop. A call into C that releases the GIL and runs long — an onnxruntime
session (the numeric check, profiling), a large numpy operation, a blocking read — would
keep the process running until it returns. The CLI's main() therefore installs:

* a SIGINT handler that notes the interrupt was *delivered* and raises KeyboardInterrupt
  as Python's default handler does (the CLI turns it into ``segcost: interrupted`` and
  exit 130, after the usual clean-up: temporary files removed, a sweep's finished rows
  written);
* a watchdog thread woken through ``signal.set_wakeup_fd`` by the C-level signal handler.
  If the main thread has not received the interrupt GRACE_SECONDS later, it is stuck in C
  code: the watchdog prints the same line and ends the process with ``os._exit(130)``
  (nothing is half-written then: segcost writes files only from Python code, which would
  have received the interrupt).

A C call that holds the GIL cannot be interrupted by any Python code; the loader bounds
those (model-local function expansion budget, frontends.expansion) so they end quickly.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

GRACE_SECONDS = 3.0
EXIT_CODE = 130  # 128 + SIGINT, what shells report for a process stopped by Ctrl-C
MESSAGE = "segcost: interrupted"

_delivered = threading.Event()
_installed = False


def _on_sigint(signum, frame):
    _delivered.set()
    raise KeyboardInterrupt


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return
        if signal.SIGINT in data:
            if not _delivered.wait(GRACE_SECONDS):
                _hard_exit()
            _delivered.clear()


def _hard_exit() -> None:
    try:
        os.write(2, f"\n{MESSAGE}\n".encode())
    finally:
        os._exit(EXIT_CODE)


def install() -> None:
    """Install the handler and watchdog (main thread of a CLI process only; idempotent)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return  # the embedding program handles Ctrl-C itself
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        os.close(read_fd)
        os.close(write_fd)
        return
    signal.signal(signal.SIGINT, _on_sigint)
    # A forked worker (sweep's process pool) has no watchdog thread: it must not write its
    # own signals into the parent's pipe, and it takes Ctrl-C as Python does by default.
    os.register_at_fork(after_in_child=_reset_in_child)
    threading.Thread(target=_watch, args=(read_fd,), name="segcost-interrupt", daemon=True).start()
    _installed = True


def _reset_in_child() -> None:
    global _installed
    _installed = False
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # forked from a thread other than the main one: signals stay as they are
        pass


def report_and_exit() -> None:
    """For a KeyboardInterrupt that reached the CLI: the one line, exit 130."""
    sys.stderr.write(MESSAGE + "\n")
    sys.stderr.flush()
    sys.exit(EXIT_CODE)
