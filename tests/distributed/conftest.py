"""One 8-device subprocess serves the placement, functional-face, collective and
late-optimizer tests."""

from __future__ import annotations

import pytest

from ._subprocess import run_once


@pytest.fixture(scope="session")
def eight(tmp_path_factory):
    """Results of ``_eight_devices.py functional placement collectives late_optimizer``."""
    results = run_once(tmp_path_factory, "_eight_devices.py", "functional", "placement",
                       "collectives", "late_optimizer")
    assert results["devices"] == 8
    return results
