"""A real single-node Slurm cluster on 127.0.0.1 for the tests: munged, slurmdbd (on the
local MariaDB, for ``sacct``), slurmctld and slurmd, with every file under one temporary
folder and the client commands pointed at it through ``SLURM_CONF``.

Facts it relies on (Debian 12's Slurm 22.05, checked on these machines): as root the
whole cluster starts in a few seconds with ``proctrack/linuxproc`` and ``task/none``
(no cgroups, no systemd); the node needs ``RealMemory`` (submitit asks for memory);
``batch_sched_delay=0`` starts batch jobs at once instead of in 3 s batches; the munge
socket's folder must be mode 755; slurmdbd ignores ``AuthInfo`` and finds the munge
socket through ``AccountingStoragePass``; without accounting submitit cannot read job
states (``sacct``), they stay UNKNOWN.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

DAEMONS = ("munged", "slurmdbd", "slurmctld", "slurmd")
PACKAGES = ("slurm-wlm", "slurmdbd", "munge")


def missing() -> str | None:
    """Why no cluster can start here (None: it can)."""
    absent = [d for d in DAEMONS if shutil.which(d, path="/usr/sbin:/usr/bin") is None]
    if absent:
        return (
            f"{', '.join(absent)} not installed (make slurm installs Debian's "
            f"{' '.join(PACKAGES)} as root)"
        )
    if os.geteuid() != 0:
        return "the test cluster's daemons run as root; this user is not"
    try:
        socket.create_connection(("127.0.0.1", 3306), timeout=2).close()
    except OSError as e:
        return f"no MariaDB/MySQL on 127.0.0.1:3306 for slurmdbd's accounting ({e})"
    return None


def install() -> None:
    """Debian's packages, when this user may (root with apt-get) and they are missing;
    the same as ``make slurm``."""
    if all(shutil.which(d, path="/usr/sbin:/usr/bin") for d in DAEMONS):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-qq", *PACKAGES]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(cmd, env=env, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, predicate, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"test Slurm cluster: {what} not after {timeout:g} s\n{tail}")


class Cluster:
    """One started cluster; :meth:`stop` ends every daemon it started (by pid) and removes
    its folder and its accounting database."""

    NODE = "rsexp-node"
    PARTITION = "debug"

    def __init__(self, root: Path, cpus: int = 2, mem_mb: int = 8000):
        self.root, self.cpus, self.mem_mb = root, cpus, mem_mb
        self.name = f"rsexp{uuid.uuid4().hex[:6]}"
        self.db = f"slurm_acct_{self.name}"
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- files
    def _write(self) -> None:
        r = self.root
        for d in ("state", "spool", "log", "munge"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / "munge").chmod(0o755)
        self.socket = r / "munge" / "munge.socket"
        key = r / "munge" / "munge.key"
        subprocess.run(["mungekey", "-c", "-k", str(key)], check=True, capture_output=True)
        key.chmod(0o600)
        self.ports = {n: _free_port() for n in ("ctld", "slurmd", "dbd")}
        (r / "slurmdbd.conf").write_text(
            "AuthType=auth/munge\n"
            f"AuthInfo=socket={self.socket}\n"
            f"DbdAddr=127.0.0.1\nDbdHost=localhost\nDbdPort={self.ports['dbd']}\n"
            "SlurmUser=root\n"
            f"PidFile={r}/slurmdbd.pid\nLogFile={r}/log/slurmdbd.log\n"
            "StorageType=accounting_storage/mysql\n"
            "StorageHost=127.0.0.1\nStoragePort=3306\nStorageUser=root\n"
            f"StorageLoc={self.db}\n"
        )
        (r / "slurmdbd.conf").chmod(0o600)
        self.conf.write_text(
            f"ClusterName={self.name}\n"
            "SlurmctldHost=localhost(127.0.0.1)\n"
            f"SlurmctldPort={self.ports['ctld']}\nSlurmdPort={self.ports['slurmd']}\n"
            "SlurmUser=root\nSlurmdUser=root\n"
            f"AuthType=auth/munge\nAuthInfo=socket={self.socket}\n"
            "CryptoType=crypto/munge\nMpiDefault=none\n"
            f"StateSaveLocation={r}/state\nSlurmdSpoolDir={r}/spool\n"
            f"SlurmctldPidFile={r}/slurmctld.pid\nSlurmdPidFile={r}/slurmd.pid\n"
            f"SlurmctldLogFile={r}/log/slurmctld.log\nSlurmdLogFile={r}/log/slurmd.log\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n"
            "SchedulerParameters=batch_sched_delay=0\n"
            "ReturnToService=2\nKillWait=5\nMinJobAge=300\n"
            "JobAcctGatherType=jobacct_gather/none\n"
            "AccountingStorageType=accounting_storage/slurmdbd\n"
            f"AccountingStorageHost=127.0.0.1\nAccountingStoragePort={self.ports['dbd']}\n"
            f"AccountingStoragePass={self.socket}\n"
            f"NodeName={self.NODE} NodeAddr=127.0.0.1 NodeHostname=localhost "
            f"CPUs={self.cpus} RealMemory={self.mem_mb} State=UNKNOWN\n"
            f"PartitionName={self.PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP\n"
        )

    def _start(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "w")  # noqa: SIM115 (the daemon's)
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )
        log.close()

    def _alive(self, name: str) -> None:
        if self.procs[name].poll() is not None:
            out = (self.root / "log" / f"{name}.out").read_text()[-2000:]
            raise RuntimeError(f"test Slurm cluster: {name} exited\n{out}")

    def run(self, *argv: str, check: bool = True) -> str:
        """A Slurm client command against this cluster; its stdout."""
        p = subprocess.run(argv, env=self.env, capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {p.stderr.strip()}")
        return p.stdout

    # -- life
    def start(self) -> Cluster:
        self._write()
        r = self.root
        self._start("munged", ["munged", "-F", "--force", f"--socket={self.socket}",
                               f"--key-file={r}/munge/munge.key",
                               f"--pid-file={r}/munge/munged.pid",
                               f"--log-file={r}/log/munged.log",
                               f"--seed-file={r}/munge/munged.seed"])  # fmt: skip
        _wait("munged's socket", self.socket.exists, 20, r / "log" / "munged.log")
        self._start("slurmdbd", ["slurmdbd", "-D"])

        def dbd_listens() -> bool:
            self._alive("slurmdbd")
            try:
                socket.create_connection(("127.0.0.1", self.ports["dbd"]), 0.5).close()
                return True
            except OSError:
                return False

        _wait("slurmdbd", dbd_listens, 60, r / "log" / "slurmdbd.log")
        self._start("slurmctld", ["slurmctld", "-D", "-i"])
        self._start("slurmd", ["slurmd", "-D", "-N", self.NODE])

        def idle() -> bool:
            self._alive("slurmctld")
            self._alive("slurmd")
            out = self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()
            return out == "idle"

        _wait("the node idle in sinfo", idle, 60, r / "log" / "slurmctld.log")
        return self

    def stop(self) -> None:
        """Every job cancelled, every daemon ended (SIGTERM, then SIGKILL), the accounting
        database dropped, the folder removed."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--full", "--signal=KILL", "-u", "root", check=False)
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        subprocess.run(["mysql", "-h", "127.0.0.1", "-u", "root", "-e",
                        f"DROP DATABASE IF EXISTS {self.db}"], capture_output=True)  # fmt: skip
        shutil.rmtree(self.root, ignore_errors=True)
