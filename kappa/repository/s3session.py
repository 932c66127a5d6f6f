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


def url_options(url: str) -> dict[str, Any]:
    """Options for fsspec's ``url_to_fs(url, ...)``: Kappa's session for each S3 layer of ``url``,
    also inside a chained URL (``simplecache::s3://...``); none for other URLs."""
    protocols = {part.split("://", 1)[0] for part in url.split("::") if "://" in part}
    return {protocol: s3_options() for protocol in sorted(protocols & {"s3", "s3a"})}


def s3_options() -> dict[str, Any]:
    """Options to add to fsspec's for an ``s3://`` URL (the configuration's win)."""
    from fsspec.config import conf

    configured = conf.get("s3", {})
    if "session" in configured:
        return {}
    return {"session": session_here(configured.get("profile"))}


def in_this_process(options: dict[str, Any]) -> dict[str, Any]:
    """s3fs ``options`` made in another process (before a fork), with this process's session in
    place of that process's (a session's credential refresh is bound to its event loop)."""
    session = options.get("session")
    if session is None or not isinstance(session, _session_class()):
        return options
    return {**options, "session": session_here(getattr(session, "kappa_profile", None))}


def session_here(profile: str | None) -> Any:
    """This process's session for ``profile``; also how a pickled one is loaded (in a Dask or
    Spark worker: that process's own session, reading that process's environment)."""
    return _session(os.getpid(), profile)


@functools.cache
def _session(pid: int, profile: str | None) -> Any:
    """One session per process (``pid``: a forked child makes its own) and profile."""
    session = _session_class()(profile)
    # botocore's add_expect_header is on before-call.s3 too: this one runs after it
    session.get_component("event_emitter").register_last("before-call.s3", _send_body_at_once)
    return session


@functools.cache
def _session_class() -> type:
    from aiobotocore.session import AioSession

    class KappaS3Session(AioSession):  # type: ignore[misc]
        """An AioSession that pickles as "this process's session for the profile": a file system
        sent to a worker carries no environment (credentials) of the process it came from, and
        its fsspec cache key (the repr) is the same everywhere."""

        def __init__(self, profile: str | None) -> None:
            super().__init__(profile=profile)
            self.kappa_profile = profile

        def __reduce__(self) -> tuple[Any, tuple[str | None]]:
            return session_here, (self.kappa_profile,)

        def __repr__(self) -> str:
            return f"KappaS3Session(profile={self.kappa_profile!r})"

    return KappaS3Session


def _send_body_at_once(params: dict[str, Any], **_: Any) -> None:
    params.get("headers", {}).pop("Expect", None)
