"""Checked by mypy (tests/typing/test_typing.py): ``@kappa.api`` keeps the function's types."""

from __future__ import annotations

from typing import Any, assert_type

import kappa
from kappa.adapters import JsonInput
from kappa.service import APIMethod, InferenceAPI


class Typed(kappa.BentoService):
    @kappa.api(input=JsonInput(), batch=True)
    def lengths(self, items: list[str]) -> list[int]:
        return [len(i) for i in items]


svc = Typed()
assert_type(svc.lengths(["a", "bb"]), list[int])
assert_type(svc.inference_apis["lengths"], InferenceAPI[Any, Any])
lengths_api: InferenceAPI[[list[str]], list[int]] = svc.lengths
method: APIMethod[Typed, [list[str]], list[int]] = Typed.lengths
svc.lengths(3)  # E: wrong argument type
