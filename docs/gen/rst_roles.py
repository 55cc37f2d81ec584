"""A griffe extension for the API pages: the docstrings cite code with Sphinx roles
(``:func:`attention_tap```, ``:class:`~rsexp.config.Config```); Markdown shows those
as raw text, so each becomes a code span (``attention_tap``), ``double backticks``
single ones, and a paragraph ending ``::`` (reST's "a code block follows") a colon; the
indented block after it is a Markdown code block already. A line ``Example::`` becomes
"For example:", since ``Example:`` would open Google style's doctest section."""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`~?([^`]+)`")


class RstRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            text = ROLE.sub(r"`\1`", obj.docstring.value)
            text = re.sub(r"``([^`]+)``", r"`\1`", text)
            text = re.sub(r"^(\s*)Examples?::$", r"\1For example:", text, flags=re.M)
            obj.docstring.value = re.sub(r"::$", ":", text, flags=re.M)
