"""One run: config -> data, model, optimiser -> epochs -> run folder; resume.

- :mod:`~rsexp.experiment.rundir`: the run folder (:class:`RunDir`)
- :mod:`~rsexp.experiment.inputs`: data with guidance (``build_data``, ``prepare``)
- :mod:`~rsexp.experiment.build`: seed, device, model, optimiser (``build_run``)
- :mod:`~rsexp.experiment.loop`: the epoch loop (:class:`Trainer`)
- :mod:`~rsexp.experiment.interrupts`: Ctrl-C / SIGTERM handling
- :mod:`~rsexp.experiment.reporter`: everything printed
- :mod:`~rsexp.experiment.run`: ``train``, ``resume``, ``run_or_resume``
"""

from rsexp.experiment.inputs import Data, build_data, prepare
from rsexp.experiment.interrupts import Interrupted, StopRun
from rsexp.experiment.run import RunResult, new_run_id, resume, run_or_resume, train
from rsexp.experiment.rundir import RunDir

__all__ = [
    "Data",
    "Interrupted",
    "RunDir",
    "RunResult",
    "StopRun",
    "build_data",
    "new_run_id",
    "prepare",
    "resume",
    "run_or_resume",
    "train",
]
