"""Offline scoring over the one Arrow batch path (``BatchRunner``, ``kappa run``, Spark, Dask, Airflow).

Imports only ``kappa``; never ``kappa_online``.
"""
