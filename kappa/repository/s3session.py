"""The aiobotocore session Kappa gives s3fs: S3 uploads that a frozen store cannot hang for ever.

botocore asks for ``Expect: 100-continue`` on every upload (``PutObject``, ``UploadPart``), and
aiohttp does not run its read timeout while it waits for the ``100 Continue``: a store that
accepts the connection and then stops answering (a frozen server, a network that drops packets)
holds the upload, and the run, for ever. Without the header the body goes out at once and the
read timeout (``config_kwargs.read_timeout``, 60 s unless set) ends the wait; botocore's and
s3fs's retries then end in an error naming the URL. The cost: a request the store refuses is
refused after its body was sent rather than before.

The session is the one s3fs would create (with the ``profile`` fsspec's configuration names),
plus that handler; one per process. Where the configuration passes its own ``session``, it is
left alone.
"""

from __future__ import annotations

import functools
import os
from typing import Any


def s3_options() -> dict[str, Any]:
    """Options to add to fsspec's for an ``s3://`` URL (the configuration's win)."""
    from fsspec.config import conf

    configured = conf.get("s3", {})
    if "session" in configured:
        return {}
    return {"session": _session(os.getpid(), configured.get("profile"))}


def in_this_process(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs ``options`` made in another process (before a fork), with this process's session in
    place of that process's (a session's credential refresh is bound to its event loop)."""
    profile = _MADE.get(id(options.get("session")))
    if profile is None:
        return options
    return {**options, "session": _session(os.getpid(), profile[0])}


_MADE: dict[int, tuple[str | None]] = {}  # id of a session made here -> its profile


@functools.lru_cache(maxsize=4)
def _session(pid: int, profile: str | None) -> Any:
    """One session per process (``pid``: a forked child makes its own) and profile."""
    from aiobotocore.session import AioSession

    session = AioSession(profile=profile)
    # after botocore's own handlers, which are registered on the operations (before-call.s3.PutObject)
    session.register("before-call.s3", _send_body_at_once)
    _MADE[id(session)] = (profile,)
    return session


def _send_body_at_once(params: dict[str, Any], **_: Any) -> None:
    params.get("headers", {}).pop("Expect", None)
