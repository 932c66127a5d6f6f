"""Kappa: save models as versioned bundles and score data with them, offline first.

``import kappa`` stays light: no pandas, pyarrow, Spark, Dask, Airflow,
Starlette or ML framework is imported until something uses it.
"""

from kappa._version import __version__ as __version__
from kappa.bundle.load import load as load
from kappa.service import BentoService as BentoService
from kappa.service import api as api
from kappa.service import artifacts as artifacts
from kappa.service import env as env
from kappa.service import web_static_content as web_static_content

__all__ = ["BentoService", "__version__", "api", "artifacts", "env", "load", "web_static_content"]
