"""`import kappa` stays light: no engine, server or ML framework, no pandas/pyarrow."""

import subprocess
import sys

HEAVY = [
    "pyspark",
    "dask",
    "distributed",
    "airflow",
    "starlette",
    "uvicorn",
    "torch",
    "xgboost",
    "lightgbm",
    "sklearn",
    "onnxruntime",
    "pandas",
    "pyarrow",
    "sqlalchemy",
]


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {line.split(".")[0] for line in out.stdout.splitlines()}


def test_import_kappa_imports_no_heavy_package() -> None:
    loaded = _modules_after("import kappa")
    assert "kappa" in loaded
    assert sorted(set(HEAVY) & loaded) == []


def test_declaring_a_service_imports_no_framework() -> None:
    loaded = _modules_after(
        "import kappa\nfrom kappa.adapters import DataframeInput\n"
        "from kappa.frameworks.sklearn import SklearnModelArtifact\n"
        "from kappa.frameworks.pytorch import PytorchModelArtifact\n"
        "from kappa.frameworks.xgboost import XgboostModelArtifact"
    )
    assert sorted({"torch", "xgboost", "sklearn", "pyspark", "starlette"} & loaded) == []
