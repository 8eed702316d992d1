"""Logging set-up shared by every process: one line per record, tagged with the
transaction id of the request being served so one request can be followed across services."""

from __future__ import annotations

import contextvars
import logging
import sys

current_trans_id: contextvars.ContextVar[str] = contextvars.ContextVar("trans_id", default="-")

FORMAT = "%(asctime)s %(process)d %(name)s %(levelname)s [%(trans_id)s] %(message)s"


class TransIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.trans_id = current_trans_id.get()
        return True


class Formatter(logging.Formatter):
    """``FORMAT``'s time formatted once a second, not once a record: a busy node writes an
    access line per request, and ``strftime`` was half of what a line cost."""

    second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        whole = int(record.created)
        if self.second[0] != whole:
            self.second = (whole, super().formatTime(record, "%Y-%m-%d %H:%M:%S"))
        return f"{self.second[1]},{int(record.msecs):03d}"


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Routes every ``soko.*`` logger to ``stream`` (stderr by default) with the trans id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(Formatter(FORMAT))
    handler.addFilter(TransIdFilter())
    root = logging.getLogger("soko")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
