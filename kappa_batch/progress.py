"""Progress of a run: a bar (rows, rows/s, ETA) on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

log = logging.getLogger(__name__)
LOG_EVERY_S = 10.0


class Progress:
    def __init__(self, total: int | None, enabled: bool | None = None, label: str = "scoring") -> None:
        self.total = total
        self.rows = 0
        self.errors = 0
        self.start = time.monotonic()
        self._last_log = self.start
        self._bar: Any = None
        if enabled if enabled is not None else sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=" rows", unit_scale=True, desc=label, dynamic_ncols=True)

    def update(self, rows: int, errors: int = 0) -> None:
        self.rows += rows
        self.errors += errors
        if self._bar is not None:
            self._bar.update(rows)
            if self.errors:
                self._bar.set_postfix(errors=self.errors, refresh=False)
            return
        now = time.monotonic()
        if now - self._last_log >= LOG_EVERY_S:
            self._last_log = now
            rate = self.rows / (now - self.start)
            of = f"/{self.total}" if self.total else ""
            log.info("scored %d%s rows (%d in error), %.0f rows/s", self.rows, of, self.errors, rate)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
