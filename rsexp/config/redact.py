"""Secrets never enter the config: redaction happens once, where a config comes in from
the outside world (a YAML file, the command line), in :func:`rsexp.config.from_dict`.
Every sink (``config.yaml``, params, checkpoints, trackers, the console) then holds the
same masked value, and a resume from ``config.yaml`` finds the same experiment and run.
"""

from __future__ import annotations

import os
import re

REDACTED = "***"
_SECRET_NAME = re.compile(r"(api[_-]?key|token|secret|passw(or)?d|credential|auth)", re.I)
# values that are keys whatever their name: OpenAI/Anthropic-style, GitHub, Slack, HF
_SECRET_VALUE = re.compile(
    r"(sk-[A-Za-z0-9_\-]{16,}|gh[pousr]_[A-Za-z0-9]{20,}|xox[abprs]-[A-Za-z0-9\-]{10,}"
    r"|hf_[A-Za-z0-9]{20,})"
)
_URI_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@]+):(?P<pw>[^@/]+)@")


def secret_values() -> set[str]:
    """Values of environment variables whose names look like keys, tokens or passwords."""
    return {v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6}


def redact_text(text: str, secrets: set[str] | None = None) -> str:
    """``text`` with known secret values, key-looking values and URI passwords masked."""
    for s in secret_values() if secrets is None else secrets:
        text = text.replace(s, REDACTED)
    text = _SECRET_VALUE.sub(REDACTED, text)
    return _URI_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)


def redact(params: dict, secrets: set[str] | None = None) -> dict:
    """Copy of ``params`` with secret-looking keys, known secret values and URI passwords
    masked. Works on flat or nested dicts."""
    secrets = secret_values() if secrets is None else secrets
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out[k] = redact(v, secrets)
        elif _SECRET_NAME.search(str(k).rsplit(".", 1)[-1]) and v not in ("", None):
            out[k] = REDACTED
        elif isinstance(v, str):
            out[k] = redact_text(v, secrets)
        else:
            out[k] = v
    return out
