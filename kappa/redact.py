"""Credentials never reach a message or a log line: ``user:secret@host`` -> ``user:***@host``."""

from __future__ import annotations

import logging
import re

_CREDENTIALS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)[^@\s'\"/]+@")


def redact(text: str) -> str:
    """``text`` with the passwords of the URLs in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1***@", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def redact_logs(logger: logging.Logger | None = None) -> None:
    """Add :class:`RedactingFilter` to the handlers of ``logger`` (the root logger by default)."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
