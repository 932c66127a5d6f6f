"""Score Dask DataFrames with Kappa bundles: ``kappa_batch.dask.score(ddf, "Name:latest", api="predict")``."""

from kappa_batch.runners.dask import runner_for, score, ship

__all__ = ["runner_for", "score", "ship"]
