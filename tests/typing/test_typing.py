"""mypy sees through ``@kappa.api``: a call returns the function's type, wrong arguments fail."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def test_api_decorator_preserves_types() -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--hide-error-context",
            "--cache-dir",
            str(HERE.parents[1] / ".mypy_cache"),
            str(HERE / "api_types.py"),
        ],
        capture_output=True,
        text=True,
        cwd=HERE.parents[1],
    )
    errors = [line for line in out.stdout.splitlines() if ": error:" in line and "api_types.py" in line]
    # exactly one error, on the line marked "# E:"
    marked = [
        n for n, line in enumerate((HERE / "api_types.py").read_text().splitlines(), 1) if "# E:" in line
    ]
    assert [int(line.split(":")[1]) for line in errors] == marked, out.stdout
    assert "list[str]" in errors[0]
