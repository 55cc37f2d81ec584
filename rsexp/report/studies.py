"""A study's storage as a URL: checked, given its driver, its damage named (for the
sweep that writes studies and the tables that read them)."""

from __future__ import annotations

from pathlib import Path

from rsexp.errors import StorageError


def shown_url(url: str) -> str:
    from rsexp.track.provenance import redact_text

    return redact_text(url)


def storage_url(url: str) -> str:
    """Check a storage URL and name its driver.

    SQLAlchemy 2 maps a plain ``postgresql://`` to psycopg 3; rsexp installs psycopg2
    (``psycopg2-binary``), so such a URL is given that driver unless psycopg 3 is there.
    """
    import importlib.util

    scheme, sep, rest = url.partition("://")
    if not sep:
        raise StorageError(
            f"--storage {shown_url(url)!r} is not a URL; use sqlite:///<path>.db or "
            f"postgresql://<user>@<host>/<database>"
        )
    dialect = scheme.split("+")[0]
    if dialect == "sqlite":
        path = Path(rest.removeprefix("/")) if rest.startswith("/") else Path(rest)
        if rest and not path.parent.is_dir():
            raise StorageError(
                f"--storage {shown_url(url)}: the folder {path.parent} does not exist; create it "
                f"first (or leave --storage out for runs/<dataset>/optuna.db)"
            )
        return url
    if dialect in ("postgresql", "postgres"):
        driver = "psycopg" if importlib.util.find_spec("psycopg") else "psycopg2"
        if "+" not in scheme:
            url = f"postgresql+{driver}://{rest}"
        return url
    if dialect in ("mysql", "mariadb"):
        return url
    raise StorageError(
        f"--storage {shown_url(url)}: unknown database {scheme!r}; Optuna's RDB storage takes "
        f"sqlite:///..., postgresql://... or mysql://..."
    )


def damaged(url: str, e: BaseException) -> StorageError:
    """The error for a study database that is not a database any more (a truncated or
    overwritten SQLite file), saying what to do."""
    cause = getattr(e, "orig", None) or e
    where = url.split(":///", 1)[-1] if url.startswith("sqlite") else shown_url(url)
    return StorageError(
        f"--storage {shown_url(url)}: the study database is damaged ({cause}). Move "
        f"{where} aside (or restore it from a copy) and run the same command again: a "
        f"new study starts, and finished runs in the runs folder are read back, not "
        f"trained again"
    )
