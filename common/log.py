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


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Routes every ``soko.*`` logger to ``stream`` (stderr by default) with the trans id."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(TransIdFilter())
    root = logging.getLogger("soko")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
