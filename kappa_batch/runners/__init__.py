"""Engines that drive ``kappa_batch`` runners: local, Spark, Dask, Airflow."""
