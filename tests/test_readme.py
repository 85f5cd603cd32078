"""The README works as written: its first shell block is the two promised commands, CI runs the
second, and its ```python blocks run in order in one namespace (as a reader would paste them)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from tests.doc_blocks import python_blocks, run_blocks

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_opens_with_the_main_job_and_the_test_command():
    text = README.read_text()
    first_block = re.search(r"^```(\w*)\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)
    assert first_block.group(1) == "sh"
    main_job, tests = first_block.group(2).strip().splitlines()
    main_words, test_words = shlex.split(main_job), shlex.split(tests)
    assert main_words[:3] == ["python3", "-m", "venv"] and test_words[:3] == main_words[:3]
    train = main_words[main_words.index(".venv/bin/torsh-fn"):]
    assert train[:2] == [".venv/bin/torsh-fn", "train"] and "digits" in train
    assert test_words[test_words.index(".venv/bin/python"):][:3] == [".venv/bin/python", "-m",
                                                                     "pytest"]
    assert "torch==2.13.0" in test_words and ".[test]" in test_words


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "sed -n 2p" in ci and "README.md" in ci and 'bash -c "$test_command"' in ci


def test_every_python_block_of_the_readme_runs():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 4, "the README lost its code blocks (or the fence syntax changed)"
    printed, namespace = run_blocks(README, blocks)
    assert "(3): Linear(in_features=128, out_features=10, bias=True)" in printed
    assert namespace["loss"].shape == () and float(namespace["loss"]) < 2.4
    assert namespace["per_example"]["0.weight"].shape == (32, 128, 64)
