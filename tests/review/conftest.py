"""Fixtures of the review tests."""

from __future__ import annotations

import pytest
from review_helpers import make_scored_folder


@pytest.fixture
def scored_folder(tmp_path):
    return make_scored_folder(tmp_path / "scored")
