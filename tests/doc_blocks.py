"""Run a Markdown page's ```python blocks as a reader would: in order, in one namespace."""

from __future__ import annotations

import contextlib
import io
import linecache
import re
from pathlib import Path


def python_blocks(text: str) -> list[str]:
    """The bodies of the page's fenced ```python blocks, in order."""
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def run_blocks(page: Path, blocks: list[str]) -> tuple[str, dict]:
    """Execute ``blocks`` of ``page`` in one namespace; return what they print and the namespace.
    Tracebacks name the page and block ("README.md, block 2") with the block's lines."""
    namespace: dict = {"__name__": page.stem.replace("-", "_")}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for k, code in enumerate(blocks):
            name = f"{page.name}, block {k + 1}"
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)
            exec(compile(code, name, "exec"), namespace)
    return out.getvalue(), namespace
