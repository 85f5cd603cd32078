"""docs/porting.md runs: its ```python blocks are executed in order, in one namespace, as a
reader would run them in a notebook; what they print is checked where the page promises it."""

from __future__ import annotations

import contextlib
import io
import linecache
import re
from pathlib import Path

import pytest

pytest.importorskip("torch")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "porting.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_every_code_block_of_the_porting_page_runs():
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 8, "the page lost its code blocks (or the fence syntax changed)"
    namespace: dict = {"__name__": "porting_doc"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        for k, code in enumerate(blocks):
            name = f"{PAGE.name}, block {k + 1}"
            linecache.cache[name] = (len(code), None, code.splitlines(True), name)  # tracebacks
            exec(compile(code, name, "exec"), namespace)
    printed = out.getvalue()
    assert "PyTorch loss after 4 steps:" in printed
    assert "(head): Linear(in_features=392, out_features=10, bias=True)" in printed
    assert ("size mismatch for head.weight: copying a param with shape (10, 100) from "
            "checkpoint, the shape in current model is (10, 392)") in printed
    assert "loss per epoch:" in printed
