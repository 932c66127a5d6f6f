"""The Open Inference Protocol (KServe V2) over the same endpoints and batch path.

A model is the service (``/v2/models/<ServiceName>``); ``infer`` uses the API named in
``parameters.api``, else ``predict``, else the first API. Inputs are columns (one 1-D
tensor per feature) or one 2-D tensor whose columns are the features.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kappa.errors import InputError
from kappa_online.endpoint import shed
from kappa_online.replies import Reply, answered, answering, error, internal_error, json_response, reply_id

if TYPE_CHECKING:
    from kappa_online.endpoint import Endpoint
    from kappa_online.state import State

DATATYPES = {
    "BOOL": pa.bool_(),
    "INT8": pa.int8(),
    "INT16": pa.int16(),
    "INT32": pa.int32(),
    "INT64": pa.int64(),
    "UINT8": pa.uint8(),
    "UINT16": pa.uint16(),
    "UINT32": pa.uint32(),
    "UINT64": pa.uint64(),
    "FP16": pa.float16(),
    "FP32": pa.float32(),
    "FP64": pa.float64(),
    "BYTES": pa.string(),
}


def datatype(arrow_type: pa.DataType) -> str:
    for name, kind in DATATYPES.items():
        if kind == arrow_type:
            return name
    return "BYTES"


def to_batch(payload: Any, columns: list[str] | None) -> pa.RecordBatch:
    """A V2 ``inputs`` list as one Arrow batch."""
    try:
        return _to_batch(payload, columns)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:  # values that are not of their datatype
        raise InputError(f"a V2 input's data does not match its datatype: {exc}") from None


def _to_batch(payload: Any, columns: list[str] | None) -> pa.RecordBatch:
    import numpy as np

    if not isinstance(payload, dict) or not isinstance(payload.get("inputs"), list) or not payload["inputs"]:
        raise InputError('a V2 infer request is {"inputs": [{"name", "shape", "datatype", "data"}, ...]}')
    arrays: list[pa.Array] = []
    names: list[str] = []
    for tensor in payload["inputs"]:
        if not isinstance(tensor, dict) or not {"name", "shape", "datatype", "data"} <= set(tensor):
            raise InputError("every V2 input needs name, shape, datatype and data")
        kind = DATATYPES.get(str(tensor["datatype"]).upper())
        if kind is None:
            raise InputError(f"unknown V2 datatype {tensor['datatype']!r}; use one of {sorted(DATATYPES)}")
        shape = tensor["shape"]
        try:
            values = np.asarray(
                tensor["data"], dtype=object if kind == pa.string() else kind.to_pandas_dtype()
            )
            values = values.reshape(shape)
        except (ValueError, TypeError) as exc:
            raise InputError(f"V2 input {tensor['name']!r}: data does not fit shape {shape}: {exc}") from None
        if values.ndim == 1:
            arrays.append(pa.array(values, kind))
            names.append(str(tensor["name"]))
        elif values.ndim == 2 and len(payload["inputs"]) == 1:
            width = values.shape[1]
            labels = columns if columns and len(columns) == width else [str(i) for i in range(width)]
            arrays += [pa.array(values[:, i], kind) for i in range(width)]
            names += labels
        else:
            raise InputError("V2 inputs must be 1-D tensors (one per column) or a single 2-D tensor")
    if len({len(a) for a in arrays}) != 1:
        raise InputError("V2 inputs must all have the same number of rows")
    return pa.RecordBatch.from_arrays(arrays, names=names)


def routes(state: State) -> list[BaseRoute]:
    def model_or_error(name: str) -> Response | None:
        if state.manifest is None:
            return error(503, "the model is loading", {"Retry-After": "1"})
        if name != state.manifest.name:
            return error(404, f"no model {name!r}; this server has {state.manifest.name!r}")
        return None

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        return json_response({"ready": state.ready}, 200 if state.ready else 503)

    async def model(request: Request) -> Response:
        problem = model_or_error(request.path_params["name"])
        if problem is not None:
            return problem
        endpoint = state.endpoints[_api_name(state, None)]
        expected = endpoint.api.input_adapter.arrow_schema()
        inputs = [{"name": f.name, "datatype": datatype(f.type), "shape": [-1]} for f in (expected or [])]
        columns = getattr(endpoint.api.input_adapter, "columns", None)
        if expected is None and columns:  # names declared, types not: any type the model takes
            inputs = [{"name": str(c), "datatype": "BYTES", "shape": [-1]} for c in columns]
        declared = endpoint.api.output_adapter.arrow_schema()
        outputs = [{"name": f.name, "datatype": datatype(f.type), "shape": [-1]} for f in (declared or [])]
        return json_response(
            {
                "name": state.manifest.name,
                "versions": [state.manifest.version],
                "platform": "kappa",
                "inputs": inputs,
                "outputs": outputs,
            }
        )

    async def model_ready(request: Request) -> Response:
        problem = model_or_error(request.path_params["name"])
        return problem or json_response({"name": state.manifest.name, "ready": state.ready})

    async def infer(request: Request) -> Response:
        import json

        start = time.perf_counter()
        problem = model_or_error(request.path_params["name"])
        if problem is not None:
            return problem
        if not state.ready:
            return error(503, "the server is not ready", {"Retry-After": "1"})
        try:
            payload = json.loads(await request.body())
        except (ValueError, RecursionError) as exc:
            return error(400, f"the request body is not valid JSON: {exc}")
        try:
            api = _api_name(
                state, (payload.get("parameters") or {}).get("api") if isinstance(payload, dict) else None
            )
        except InputError as exc:
            return error(400, str(exc))
        endpoint = _version_endpoint(state, api, request)
        if endpoint is None:
            return error(404, f"version {request.path_params['version']!r} is not served here")
        endpoint.in_flight += 1  # a swapped-out version waits for it
        token, rid = answering(request.scope)
        try:
            seen: list[Any] = []
            refused = endpoint.dispatcher.refusal()  # before the tensors are converted: refusing costs little
            try:
                reply = shed(refused) if refused is not None else await _infer(state, endpoint, payload, seen)
            except Exception as exc:  # noqa: BLE001 - a bug answers 500 with a request id, as on POST /<api>
                reply = internal_error(f"V2 infer on {endpoint.name}: unexpected error", exc)
            seconds = time.perf_counter() - start
            endpoint.observe(reply.status, seconds)
            rid = reply_id(reply) or rid  # a 500 keeps the id it was logged under
            endpoint.log(rid, reply.status, seconds, seen)
            response = reply.response()
            response.headers.update(endpoint.headers(rid))
            return response
        finally:
            answered(token)
            endpoint.in_flight -= 1

    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name:str}", model),
        Route("/v2/models/{name:str}/ready", model_ready),
        Route("/v2/models/{name:str}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name:str}/versions/{version:str}/infer", infer, methods=["POST"]),
    ]


async def _infer(state: State, endpoint: Endpoint, payload: Any, seen: list[Any]) -> Reply:
    """One V2 request through ``endpoint``; ``seen`` gets its decoded batch and answer rows."""
    try:
        adapter = endpoint.api.input_adapter
        batch = adapter.conform(to_batch(payload, getattr(adapter, "columns", None)))
    except InputError as exc:
        return Reply.error(400, str(exc))
    seen.append(batch)
    scored = await endpoint.score(batch)
    if isinstance(scored, Reply):
        return scored
    endpoint.sample = batch  # answered: a request fit to warm a successor with
    table = scored.rows.result.outputs
    seen.append(table)
    outputs = [
        {
            "name": name,
            "datatype": datatype(column.type),
            "shape": [table.num_rows],
            "data": column.to_pylist(),
        }
        for name, column in zip(table.column_names, table.columns, strict=True)
    ]
    body = {
        "model_name": state.manifest.name,
        "model_version": endpoint.version.rpartition(":")[2] or state.manifest.version,
        "outputs": outputs,
    }
    if isinstance(payload, dict) and payload.get("id") is not None:
        body["id"] = payload["id"]
    return Reply.json(body)


def _version_endpoint(state: State, api: str, request: Request) -> Endpoint | None:
    """The endpoint of ``api`` for this request: the version the path names
    (``/versions/{version}/infer``; None when neither the primary nor the canary is it), else the
    primary or, for its share, the canary, by X-Request-Id as on the REST routes."""
    primary = state.endpoints[api]
    version = request.path_params.get("version")
    if version is None:
        return state.route(api, request.scope, primary) if state.canary_endpoints else primary
    for endpoint in (primary, state.canary_endpoints.get(api)):
        if endpoint is not None and endpoint.version.rpartition(":")[2] == version:
            return endpoint
    return None


def _api_name(state: State, asked: str | None) -> str:
    if asked is not None:
        if asked not in state.endpoints:
            raise InputError(f"no API {asked!r}; this model has {sorted(state.endpoints)}")
        return asked
    return "predict" if "predict" in state.endpoints else next(iter(state.endpoints))
