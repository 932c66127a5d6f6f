"""One API call over an Arrow batch: alignment, discards, per-item failures."""

from __future__ import annotations

import pyarrow as pa
import pytest

from kappa.errors import InferenceError

SERVICE = """
import kappa
from kappa.adapters import DataframeInput, JsonInput
from kappa.types import InferenceError, InferenceResult

class S(kappa.BentoService):
    @kappa.api(input=DataframeInput(), batch=True)
    def double(self, df):
        return (df["x"] * 2).tolist()

    @kappa.api(input=JsonInput(), batch=True)
    def picky(self, items, tasks):
        out = []
        for item, task in zip(items, tasks):
            if item.get("skip"):
                task.discard(http_status=422, err_msg="skipped on purpose")
            elif item.get("fail"):
                out.append(InferenceError(http_status=418, err_msg="teapot"))
            else:
                out.append(InferenceResult(data=item["v"] + 1))
        return out

    @kappa.api(input=JsonInput(), batch=False)
    def one(self, item):
        return 10 // item["v"]

    @kappa.api(input=DataframeInput(), batch=True)
    def short(self, df):
        return [1]
"""


@pytest.fixture
def svc(make_module):
    return make_module(SERVICE).S()


def _json_batch(*texts):
    return pa.RecordBatch.from_pydict({"json": list(texts)})


def test_outputs_align_with_input_rows(svc):
    batch = pa.RecordBatch.from_pydict({"x": [1, 2, 3]})
    outcome = svc.inference_apis["double"].infer(batch)
    assert outcome.outputs.column("prediction").to_pylist() == [2, 4, 6]
    assert outcome.errors == []


def test_discards_and_error_results_become_error_rows(svc):
    batch = _json_batch('{"v": 1}', '{"skip": true}', "not json", '{"fail": 1}', '{"v": 5}')
    outcome = svc.inference_apis["picky"].infer(batch)
    assert outcome.outputs.column("prediction").to_pylist() == [2, None, None, None, 6]
    errors = {(e.row, e.status) for e in outcome.errors}
    assert errors == {(1, 422), (2, 400), (3, 418)}
    messages = {e.row: e.message for e in outcome.errors}
    assert "invalid JSON" in messages[2]
    assert messages[1] == "skipped on purpose"


def test_single_mode_isolates_a_raising_item(svc):
    outcome = svc.inference_apis["one"].infer(_json_batch('{"v": 2}', '{"v": 0}', '{"v": 5}'))
    assert outcome.outputs.column("prediction").to_pylist() == [5, None, 2]
    assert [(e.row, e.status) for e in outcome.errors] == [(1, 500)]
    assert "ZeroDivisionError" in outcome.errors[0].message


def test_wrong_length_fails_the_whole_batch_naming_the_api(svc):
    with pytest.raises(InferenceError, match=r"S\.short returned 1 results for 3 inputs"):
        svc.inference_apis["short"].infer(pa.RecordBatch.from_pydict({"x": [1, 2, 3]}))


def test_all_rows_discarded_gives_null_outputs(svc):
    outcome = svc.inference_apis["picky"].infer(_json_batch('{"skip": 1}', '{"skip": 1}'))
    assert outcome.outputs.num_rows == 2
    assert outcome.outputs.column(0).null_count == 2
    assert len(outcome.errors) == 2


def test_task_headers_are_empty_offline_and_case_insensitive_online(make_module):
    import pyarrow as pa

    from kappa.types import HttpHeaders

    module = make_module(
        """
        import kappa
        from kappa.adapters import JsonInput

        class Headers(kappa.BentoService):
            @kappa.api(input=JsonInput())
            def accept(self, item, task):
                return dict(task.http_headers).get("accept", "none")
        """
    )
    api = module.Headers().get_inference_api("accept")
    batch = pa.RecordBatch.from_pydict({"json": ["1", "2"]})
    assert api.infer(batch).outputs.column(0).to_pylist() == ["none", "none"]  # offline: no headers
    online = [HttpHeaders([(b"Accept", b"text/csv")]), HttpHeaders({"ACCEPT": "application/json"})]
    assert api.infer(batch, online).outputs.column(0).to_pylist() == ["text/csv", "application/json"]
    assert online[0]["accept"] == online[0]["Accept"] == "text/csv"
