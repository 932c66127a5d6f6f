"""Credentials never reach a message or a log line: ``user:secret@host`` -> ``user:***@host``."""

from __future__ import annotations

import logging
import re
import threading

# user:password@ in a URL, up to the last "@" of the URL (a password may hold "@" or "/")
_USERINFO = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s'\"]*:)[^\s'\"]*@")
# password=... in a query string or a DSN
_PARAMETER = re.compile(r"(\b(?:password|passwd|pwd|secret|token|sig)=)[^&\s'\"]+", re.IGNORECASE)
_known: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Mask ``value`` wherever it appears from now on (e.g. the database URL's password, which
    may hold characters that no URL pattern can delimit)."""
    if value and len(value) >= 4:
        with _lock:
            _known.add(value)


def redact(text: str) -> str:
    """``text`` with the passwords of the URLs in it, and the secrets registered, replaced by ``***``."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _USERINFO.sub(r"\1***@", text)
    return _PARAMETER.sub(r"\1***", text)


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
