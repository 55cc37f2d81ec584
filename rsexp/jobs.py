"""Every process rsexp starts for its work goes through here: sweep workers, confirmation
and paper runs, a trial's torchrun, ``rsexp train --nproc``.

A :class:`Job` is one child process: a Python function run in a freshly *spawned*
interpreter (never forked after torch ran: a fork can deadlock in torch's first
parallel op), or a command. Either way it runs in its own session, so a terminal's
Ctrl-C reaches the parent only, which passes it on once (:meth:`Job.interrupt`); it dies
with its parent (the kernel sends it SIGTERM when the parent dies, even of SIGKILL, and
SIGTERM takes the Ctrl-C path: its run checkpoints); its output goes to its log; a
failure comes back with its reason (the exception's type and message, sent on a pipe,
also when it came before the job wrote anything). :func:`run_all` runs many, a few at a
time. This module imports nothing heavy: a spawned child sets its environment (its GPU)
before importing its work.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rsexp.errors import ConfigError, JobFailed


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when its parent dies (Linux; a no-op
    elsewhere): even a SIGKILLed parent takes its jobs along, and SIGTERM takes the
    Ctrl-C path, so their runs are checkpointed instead of training on alone."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _child(target: str, args: tuple, env: dict, log: str | None, report) -> None:
    """A spawned job: its session, its parent's death, its environment, its log; then
    ``target`` ("module:function") with ``args``. Exit 130 when interrupted."""
    os.setsid()
    die_with_parent()
    os.environ.update(env)  # before the work's imports: CUDA_VISIBLE_DEVICES, threads
    if log is not None:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
    module, _, name = target.partition(":")
    try:
        getattr(importlib.import_module(module), name)(*args)
    except KeyboardInterrupt:  # rsexp's Interrupted too: checkpointed, to be resumed
        raise SystemExit(130) from None
    except BaseException as e:  # reported to the parent with its reason, then raised
        if not isinstance(e, SystemExit):
            report.send(f"{type(e).__name__}: {e}")
        raise


class Job:
    """One child process (see the module docstring); make it with :meth:`spawn` or
    :meth:`command`."""

    def __init__(self, name: str, proc, receive=None, log: Path | None = None):
        self.name, self.proc, self.receive, self.log = name, proc, receive, log
        self.interrupted = 0
        self._reason: str | None = None

    @classmethod
    def spawn(
        cls,
        target: str,
        args: tuple = (),
        *,
        name: str = "",
        log: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Job:
        """``target`` ("package.module:function") called with ``args`` (they cross the
        boundary pickled: typed objects such as a :class:`~rsexp.config.Config`, never
        strings to parse) in a spawned interpreter."""
        ctx = multiprocessing.get_context("spawn")
        receive, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(
            target=_child,
            args=(target, tuple(args), dict(env or {}), str(log) if log else None, send),
            daemon=False,
        )
        proc.start()
        send.close()  # the child holds its end
        return cls(name or target, proc, receive, Path(log) if log else None)

    @classmethod
    def command(
        cls,
        argv: list[str],
        *,
        name: str = "",
        log: str | Path | None = None,
        env: dict[str, str] | None = None,
    ) -> Job:
        """A command (torchrun) in its own session, its output to ``log`` (or this
        terminal)."""
        out = open(log, "a") if log else None  # noqa: SIM115 (kept open for the child)
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        if out is not None:
            out.close()  # the child has its own copy
        return cls(name or argv[0], proc, None, Path(log) if log else None)

    # -- state
    @property
    def pid(self) -> int:
        return self.proc.pid

    def poll(self) -> int | None:
        """The exit status, None while it runs."""
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.poll()
        return None if self.proc.is_alive() else self._joined()

    def _joined(self) -> int:
        self.proc.join()
        return self.proc.exitcode

    def wait(self, timeout: float | None = None) -> int:
        if isinstance(self.proc, subprocess.Popen):
            return self.proc.wait(timeout)
        self.proc.join(timeout)
        return self.proc.exitcode

    @property
    def reported(self) -> str | None:
        """The exception a spawned job reported before it ended ("Type: message")."""
        if self._reason is None and self.receive is not None:
            try:
                self._reason = self.receive.recv() if self.receive.poll() else ""
            except EOFError:
                self._reason = ""
        return self._reason or None

    @property
    def reason(self) -> str:
        """Why it failed: the exception it reported, else its exit status (and where its
        log is)."""
        if self.reported:
            return self.reported
        code = self.poll()
        where = f" (log: {self.log})" if self.log else ""
        return f"its process exited with {code}{where}"

    # -- signals
    def interrupt(self) -> None:
        """Pass one Ctrl-C on (its run checkpoints); a second one kills it."""
        if self.poll() is not None:
            return
        self.interrupted += 1
        os.kill(self.pid, signal.SIGINT if self.interrupted == 1 else signal.SIGKILL)

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)


@dataclass
class Spec:
    """A job to run: ``target`` with ``args`` (see :meth:`Job.spawn`); ``done()`` says
    whether it succeeded and with what result (e.g. the run folder's summary)."""

    target: str
    args: tuple
    done: Callable[[int], tuple[bool, object]]
    log: str | Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    label: str = ""  # how a failure names it (a run folder)


def run_all(
    specs: dict, slots: list[dict[str, str]], on_done: Callable[[object, object], None]
) -> dict:
    """Run ``specs`` (``{key: Spec}``), one per slot at a time (``slots``: each slot's
    environment, e.g. its GPU); ``on_done(key, result)`` as each succeeds. Returns
    ``{key: result}``.

    A failed job raises :class:`JobFailed` naming each failure with its reason, after the
    others in progress end (no new one starts). Ctrl-C (``KeyboardInterrupt`` here) is
    passed on once to every running job, they are waited for, and it is raised again:
    the same command continues from their checkpoints.
    """
    slots = slots or [{}]
    todo, running, free = list(specs), {}, list(range(len(slots)))
    results, failed = {}, []
    try:
        while todo or running:
            while todo and free and not failed:
                key, slot = todo.pop(0), free.pop(0)
                spec = specs[key]
                job = Job.spawn(spec.target, spec.args, name=str(key), log=spec.log,
                                env={**slots[slot], **spec.env})  # fmt: skip
                running[key] = (job, slot)
            for key, (job, slot) in list(running.items()):
                code = job.poll()
                if code is None:
                    continue
                del running[key]
                free.append(slot)
                ok, result = specs[key].done(code)
                if not ok:
                    label = specs[key].label or str(key)
                    failed.append(f"{label}: {job.reported or result or job.reason}")
                    continue
                results[key] = result
                on_done(key, result)
            if failed and not running:
                raise JobFailed("runs failed:\n  " + "\n  ".join(failed))
            time.sleep(0.2)
    except KeyboardInterrupt:
        for job, _ in running.values():
            job.interrupt()
        for job, _ in running.values():
            job.wait()
        raise
    return results


# -- which GPU each job gets (sweep.devices)


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out, as ``CUDA_VISIBLE_DEVICES`` ids: those the
    inherited ``CUDA_VISIBLE_DEVICES`` names, else ``0 .. n-1`` (CUDA is not
    initialised: the count comes from NVML)."""
    import os

    import torch

    n = torch.cuda.device_count()
    inherited = os.environ.get("CUDA_VISIBLE_DEVICES")
    if inherited is not None:
        return [d.strip() for d in inherited.split(",") if d.strip()][:n]
    return [str(i) for i in range(n)]


def worker_devices(
    spec: str, workers: int, gpus: list[str], per_worker: int = 1
) -> list[str | None]:
    """Per worker, the ``CUDA_VISIBLE_DEVICES`` it runs with (None: inherited), from
    ``sweep.devices`` and the visible ``gpus`` (:func:`visible_gpus`); ``per_worker``
    GPUs each (``sweep.nproc``: a trial on several GPUs)."""
    spec = spec.strip()
    if spec == "cpu":
        return [""] * workers
    if spec == "auto":
        if not gpus:
            return [None] * workers  # a CPU machine
        need = workers * per_worker
        if need > len(gpus):
            shared = ",".join("+".join(gpus[:per_worker]) for _ in range(workers))
            raise ConfigError(
                f"sweep.devices: {workers} workers x {per_worker} GPUs but {len(gpus)} "
                f"visible GPUs ({','.join(gpus)}); use fewer workers, or list the devices "
                f"to share cards on purpose (e.g. sweep.devices={shared})"
            )
        return [",".join(gpus[i * per_worker : (i + 1) * per_worker]) for i in range(workers)]
    groups = [g.strip() for g in spec.split(",")]
    ids = [d.strip() for g in groups for d in g.split("+")]
    if not all(ids):
        raise ConfigError(
            f"sweep.devices: {spec!r} is not auto, cpu or GPU ids like 0,1 (0+1,2+3: two "
            f"GPUs per worker)"
        )
    unknown = sorted(set(ids) - set(gpus))
    if unknown:
        raise ConfigError(
            f"sweep.devices: GPU {','.join(unknown)} is not visible here "
            f"(visible: {','.join(gpus) or 'none'})"
        )
    if len(groups) < workers:
        raise ConfigError(
            f"sweep.devices: {len(groups)} devices listed ({spec}) for {workers} workers; "
            f"list one per worker"
        )
    bad = [g for g in groups[:workers] if len(g.split("+")) != per_worker]
    if bad:
        raise ConfigError(
            f"sweep.devices: sweep.nproc={per_worker} needs {per_worker} GPUs per worker, "
            f"joined with + (e.g. 0+1,2+3); got {bad[0]}"
        )
    return [g.replace("+", ",") for g in groups[:workers]]


def device_env(device: str | None) -> dict[str, str]:
    """What a job's environment changes given ``device`` (see :func:`worker_devices`)."""
    return {} if device is None else {"CUDA_VISIBLE_DEVICES": device}


def slots(devices: list[str | None]) -> list[dict[str, str]]:
    """One environment per job slot: its GPU."""
    return [device_env(d) for d in devices]
