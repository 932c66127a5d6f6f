"""Framework artifacts. Each framework is imported only when its artifact is used.

``from kappa.frameworks.sklearn import SklearnModelArtifact`` is the usual
import; ``kappa.frameworks.SklearnModelArtifact`` works too (resolved lazily).
"""

from typing import Any

from kappa.frameworks.base import BaseArtifact as BaseArtifact


def __getattr__(name: str) -> Any:
    from kappa.frameworks.registry import registry

    if name in registry:
        from kappa.frameworks.registry import artifact_class

        return artifact_class(name)
    raise AttributeError(f"module 'kappa.frameworks' has no attribute {name!r}")
