"""The engines behind `kappa run`: the local shard loop (forked workers), and the Spark and Dask
jobs that reuse its plan, shards and report."""
