"""Fixtures of the batch engines' tests."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """A local Spark session (local[2]) for one test module, stopped after it."""
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    from kappa_batch.engines.spark_job import session

    session_ = session("local[2]", "kappa-tests")
    yield session_
    session_.stop()
