"""One 8-device subprocess serves the placement, functional-face, collective, late-optimizer,
per-replica BatchNorm and explicit-axes mesh tests."""

from __future__ import annotations

import pytest

from ._subprocess import run_once


@pytest.fixture(scope="session")
def eight(tmp_path_factory):
    """Results of ``_eight_devices.py`` sections other than training (8 CPU devices)."""
    results = run_once(tmp_path_factory, "_eight_devices.py", "functional", "placement",
                       "collectives", "late_optimizer", "unsynced_batchnorm",
                       "explicit_mesh")
    assert results["devices"] == 8
    return results
