"""How a run ends: one outcome (:class:`~rsexp.track.base.RunStatus`), recorded once, on
every exit path, into ``summary.json`` and every tracked run with the same word."""

from __future__ import annotations

from contextlib import contextmanager

from rich.markup import escape

from rsexp.errors import ResumeRefused
from rsexp.experiment.interrupts import Interrupted, StopRun, sigterm_as_interrupt
from rsexp.experiment.reporter import Reporter
from rsexp.experiment.rundir import RunDir
from rsexp.track.base import RunStatus


class Outcome:
    """The run's end, once. ``tracker`` and ``trainer`` are set as setup makes them:
    before there is a trainer, a new run's summary holds the status and the reason
    alone, and a resumed run's summary (its previous end) is left as it is."""

    def __init__(self, run_dir: RunDir, reporter: Reporter, resumed: bool):
        self.run_dir, self.reporter, self.resumed = run_dir, reporter, resumed
        self.tracker = None
        self.trainer = None
        self.status: RunStatus | None = None
        self.unwritten = ""  # why summary.json could not be written, if it could not

    def leave_as_it_was(self) -> None:
        """A refused resume: the tracked runs get back the status the run had."""
        previous = (self.run_dir.summary() or {}).get("status", RunStatus.KILLED.value)
        self.status = RunStatus(previous)
        if self.tracker is not None:
            self.tracker.finish(self.status)

    def end(self, status: RunStatus, reason: str | None = None) -> dict | None:
        """Write ``summary.json`` and set every tracker's final status (both are tried:
        a summary that cannot be written, on a full disk, still leaves the trackers
        saying how the run ended). Returns the summary written."""
        if self.status is not None:
            return None
        self.status = status
        summary = None
        try:
            if self.trainer is not None:
                summary = self.trainer.summary(status.value, reason)
            elif not self.resumed:
                summary = {"status": status.value, **({"error": reason} if reason else {})}
                self.run_dir.write_summary(summary)
        except OSError as e:  # a full disk: the trackers and the console still say it
            if status is RunStatus.FINISHED:
                raise  # a finished run must have its summary: the failure is recorded
            self.unwritten = f"{self.run_dir.summary_path} could not be written: {e}"
            self.reporter.console.print(
                f"[red]run {status.value}[/]: {escape(reason or '')} | {escape(self.unwritten)}"
            )
        finally:
            if self.tracker is not None:
                self.tracker.finish(status, reason)
        return summary


@contextmanager
def recorded(outcome: Outcome):
    """However the block ends, record it: an exception from :class:`StopRun` is
    ``stopped``; Ctrl-C / SIGTERM (taken as Ctrl-C) is ``killed`` and leaves as
    :class:`Interrupted` once training has started (a checkpoint to resume from);
    anything else is ``failed`` with its reason, and raised again. A normal end records
    itself (:meth:`Outcome.end`, finished or stopped)."""
    try:
        with sigterm_as_interrupt():
            yield outcome
    except StopRun as e:
        outcome.end(RunStatus.STOPPED, str(e))
        raise
    except ResumeRefused:  # nothing was trained: the run's record stays as it was
        outcome.leave_as_it_was()
        raise
    except KeyboardInterrupt as e:
        reason = str(e) or "interrupted"
        started = outcome.trainer is not None
        outcome.end(RunStatus.KILLED, reason if started else f"{reason} before training")
        if not started:
            raise
        outcome.reporter.interrupted(reason, outcome.run_dir.path)
        raise Interrupted(reason) from None
    except Exception as e:
        reason = f"{type(e).__name__}: {e}"
        outcome.status = None  # a finished run whose summary failed is a failed run
        outcome.end(RunStatus.FAILED, reason)
        if outcome.trainer is not None and not outcome.unwritten:  # setup: the CLI's
            outcome.reporter.failed(reason, outcome.run_dir.path)
        raise
