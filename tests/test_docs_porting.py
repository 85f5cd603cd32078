"""docs/porting.md runs: its ```python blocks are executed in order, in one namespace, as a
reader would run them in a notebook; what they print is checked where the page promises it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.doc_blocks import python_blocks, run_blocks

pytest.importorskip("torch")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "porting.md"


def test_every_code_block_of_the_porting_page_runs():
    blocks = python_blocks(PAGE.read_text())
    assert len(blocks) >= 8, "the page lost its code blocks (or the fence syntax changed)"
    printed, _ = run_blocks(PAGE, blocks)
    assert "PyTorch loss after 4 steps:" in printed
    assert "(head): Linear(in_features=392, out_features=10, bias=True)" in printed
    assert ("size mismatch for head.weight: copying a param with shape (10, 100) from "
            "checkpoint, the shape in current model is (10, 392)") in printed
    assert "loss per epoch:" in printed
