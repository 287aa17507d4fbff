"""Fixtures shared by every test folder; the helpers live in :mod:`mri_fixtures`.

Test modules import helpers with ``from mri_fixtures import make_site, write_nifti``
(never ``from conftest import ...``: several conftest.py files share that module name).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mri_fixtures import make_site


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A labelled 6-case FLAIR site at 24^3 (see :func:`mri_fixtures.make_site`)."""
    return make_site(tmp_path)
