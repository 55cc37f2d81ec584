"""Ctrl-C and SIGTERM: held across an optimiser step, turned into a checkpointed stop."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

from rsexp.errors import Interrupted  # noqa: F401 (raised here)


class StopRun(Exception):
    """Raised by an ``on_epoch`` hook to end a run early (a pruned sweep trial): the
    epoch is checkpointed and logged, the summary says ``stopped`` with the reason."""


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextmanager
def deferred_interrupts():
    """Hold Ctrl-C / SIGTERM until the block ends, then raise KeyboardInterrupt.

    Wraps a piece of work that must finish whole once started: one optimiser step with
    its bookkeeping (an interrupt inside ``optimizer.step()`` would leave a checkpoint
    holding weights updated by a batch counted as not done), and the end of an epoch
    (validation, overlays, checkpoint: an interrupt there would throw away an epoch
    whose steps all ran).
    """
    with signals_as_flags() as held:
        yield
    if held:
        raise KeyboardInterrupt(
            f"{signal.Signals(held[0]).name} received; stopped after the work in progress"
        )


@contextmanager
def signals_as_flags(on_signal=None):
    """Within the block Ctrl-C / SIGTERM raise nothing: each one is appended to the
    yielded list, for a loop that polls it (the sweep driver, which must never be
    interrupted inside a library call while its workers shut down), and
    ``on_signal(list)`` is called at once if given (the driver passes the signal on to
    its workers without waiting for its next poll). Outside the main thread the list
    stays empty."""
    received: list[int] = []
    if not in_main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signum)
        if on_signal is not None:
            on_signal(received)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt("SIGTERM received")


@contextmanager
def sigterm_as_interrupt():
    """Pre-emption (SIGTERM) takes the Ctrl-C path: checkpoint, KILLED, resume."""
    if not in_main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
