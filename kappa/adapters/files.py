"""``FileInput`` and ``ImageInput``: one binary column, file-likes or image arrays for the function."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from kappa.adapters.base import InputAdapter, decode_rows
from kappa.errors import InputError, missing_dependency
from kappa.types import InferenceTask

if TYPE_CHECKING:
    import pyarrow as pa


def _read_bytes(item: Any, adapter: str) -> bytes:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return bytes(item)
    if isinstance(item, (str, os.PathLike)):
        try:
            with open(item, "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise InputError(f"{adapter}: cannot read {os.fspath(item)!r} ({exc.strerror})") from None
    read = getattr(item, "read", None)
    if read is not None:
        data = read()
        return data.encode() if isinstance(data, str) else bytes(data)
    raise InputError(f"{adapter} takes bytes, a path or a file object per item, got {type(item).__name__}")


class FileInput(InputAdapter):
    """Raw files: the function gets ``io.BytesIO`` objects (a list of them in batch mode)."""

    column = "file"
    media_types = ("multipart/form-data", "application/octet-stream")

    def arrow_schema(self) -> pa.Schema:
        import pyarrow as pa

        return pa.schema([pa.field(self.column, pa.binary())])

    def _item_bytes(self, item: Any) -> bytes:
        return _read_bytes(item, type(self).__name__)

    def to_arrow(self, payload: Any) -> pa.RecordBatch:
        import pyarrow as pa

        if not isinstance(payload, (list, tuple)):
            raise InputError(
                f"{type(self).__name__} with batch=True takes a list of items, got {type(payload).__name__}"
            )
        data = [self._item_bytes(item) for item in payload]
        return pa.RecordBatch.from_arrays([pa.array(data, pa.binary())], names=[self.column])

    def from_http(self, body: bytes, media_type: str, files: list[bytes] | None = None) -> pa.RecordBatch:
        """The files of a multipart form (one row each), or the raw body as one file."""
        if files is not None:
            if not files:
                raise InputError("the multipart body holds no file; send the file as a form field")
            return self.to_arrow(files)
        if not body:
            raise InputError("the request body is empty; send the file's bytes or a multipart form")
        return self.to_arrow([body])

    def openapi_request(self) -> dict[str, Any]:
        return {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }

    def _column(self, batch: pa.RecordBatch) -> list[Any]:
        values: list[Any]
        if self.column in batch.schema.names:
            values = batch.column(self.column).to_pylist()
            return values
        if batch.num_columns == 1:
            values = batch.column(0).to_pylist()
            return values
        raise InputError(
            f"{type(self).__name__} expects one binary column {self.column!r}, "
            f"got columns {batch.schema.names}"
        )

    def _decode(self, data: bytes) -> Any:
        return io.BytesIO(data)

    def from_arrow(self, batch: pa.RecordBatch, tasks: Sequence[InferenceTask[Any]]) -> list[Any]:
        return decode_rows(tasks, self._column(batch), self._decode, self.column)


class ImageInput(FileInput):
    """Images: the function gets ``numpy`` arrays (height x width x channels).

    ``pilmode`` is the Pillow mode images are converted to (``"RGB"``, ``"L"``,
    ...); ``accept_image_formats`` limits the formats (``["png", "jpeg"]``).
    Pillow is imported only when an image is decoded.
    """

    column = "image"

    def __init__(self, pilmode: str = "RGB", accept_image_formats: Sequence[str] | None = None):
        self.pilmode = pilmode
        self.accept_image_formats = (
            [f.lower().lstrip(".") for f in accept_image_formats] if accept_image_formats else None
        )

    def config(self) -> dict[str, Any]:
        return {"pilmode": self.pilmode, "accept_image_formats": self.accept_image_formats}

    def _item_bytes(self, item: Any) -> bytes:
        if hasattr(item, "save") and hasattr(item, "mode"):  # a PIL image
            buffer = io.BytesIO()
            item.save(buffer, format="PNG")
            return buffer.getvalue()
        if hasattr(item, "__array_interface__") and not isinstance(item, (bytes, bytearray)):
            image = _pil().fromarray(item)
            return self._item_bytes(image)
        return super()._item_bytes(item)

    def _decode(self, data: bytes) -> Any:
        import numpy as np

        pil = _pil()
        try:
            image = pil.open(io.BytesIO(data))
            image_format = (image.format or "").lower()
            if self.accept_image_formats is not None and image_format not in self.accept_image_formats:
                raise InputError(
                    f"image format {image_format!r} is not accepted; use one of {self.accept_image_formats}"
                )
            return np.asarray(image.convert(self.pilmode))
        except (OSError, ValueError, pil.UnidentifiedImageError) as exc:
            raise InputError(f"cannot decode image ({exc})") from None


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise missing_dependency("pillow", "frameworks", "ImageInput") from None
    return Image
