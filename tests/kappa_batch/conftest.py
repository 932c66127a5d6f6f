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


# A service whose API answers, for every row, the widest BLAS/OpenMP thread pool of the process
# that scored it: what a worker of each engine was held to.
PROBE = """
import kappa
from kappa.adapters import DataframeInput, DefaultOutput


def widest_pool():
    from threadpoolctl import threadpool_info

    return max(pool["num_threads"] for pool in threadpool_info())


class Probe(kappa.BentoService):
    @kappa.api(
        input=DataframeInput(columns=["x"], dtype="float64"), output=DefaultOutput(dtype="int64"), batch=True
    )
    def threads(self, df):
        return [widest_pool()] * len(df)
"""


@pytest.fixture
def probe_bundle(make_module: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(make_module(PROBE).Probe().save_to_dir(str(tmp_path_factory.mktemp("probe") / "probe")))
