"""A griffe extension for the API pages: the docstrings cite code with Sphinx roles
(``:func:`attention_tap```, ``:class:`~rsexp.config.Config```); Markdown shows those
as raw text, so each becomes a code span (``attention_tap``), and ``double backticks``
single ones."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(r"`\1`", obj.docstring.value)
            obj.docstring.value = re.sub(r"``([^`]+)``", r"`\1`", text)
