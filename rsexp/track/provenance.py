"""Run parameters: the flattened config plus provenance, with secrets redacted."""

from __future__ import annotations

import functools
import hashlib
import platform
import subprocess
from importlib import metadata
from pathlib import Path

from rsexp.config.redact import REDACTED, redact, redact_text, secret_values  # noqa: F401


@functools.cache
def git_state(path: str | Path = ".") -> tuple[str, bool]:
    """(commit, dirty) of the repository at ``path``; ("unknown", False) outside git.
    Read once per process (the params and MLflow's Source tag ask for it): the code a
    process runs is the code it imported, whatever the checkout says later."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=path,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit, bool(status.strip())


def version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def input_digests(
    data_digest: str, guidance_path: str | Path, cache_dirs=(), clips=()
) -> dict[str, str]:
    """What a run's numbers depend on outside its config, as digests: the dataset's index
    (ids and labels of every split), the guidance file, the decoded clip cache (the
    current record of each of the run's ``clips``: its source file's size and mtime, so
    a video replaced since is a change; the records of other runs' clips are not). A
    resume compares them."""
    import json

    h, clips = hashlib.sha256(), set(clips)
    for d in sorted(Path(c) for c in cache_dirs):
        meta = d / "meta.jsonl"
        if not meta.is_file():  # generated data: the folder's name is its digest
            h.update(d.name.encode())
            continue
        current = {}
        for line in meta.read_text().splitlines():
            if line.strip():
                current[json.loads(line)["clip"]] = line  # a later line replaces
        mine = {c: v for c, v in current.items() if c in clips} or current
        h.update("\n".join(v for _, v in sorted(mine.items())).encode())
    return {
        "dataset.digest": data_digest,
        # a baseline (lambda_s = 0) trains without a guidance file: it has none
        "guidance.digest": file_digest(guidance_path) if Path(guidance_path).is_file() else "none",
        "cache.digest": h.hexdigest()[:16],
    }


def provenance(device: str, digests: dict[str, str]) -> dict[str, str]:
    commit, dirty = git_state(Path(__file__).resolve().parent)
    prov = {
        "git.commit": commit,
        "git.dirty": str(dirty).lower(),
        "python": platform.python_version(),
        "device": device,
        **digests,
    }
    for pkg in ("torch", "timm", "optuna", "mlflow", "wandb"):
        prov[f"version.{pkg}"] = version(pkg)
    return prov
