"""``kappa_batch.spark.udf`` / ``kappa_batch.spark.score``: see :mod:`kappa_batch.runners.spark`."""

from kappa_batch.runners.spark import score as score
from kappa_batch.runners.spark import ship as ship
from kappa_batch.runners.spark import udf as udf
