"""Logging set-up shared by every process: one line per record, tagged with the
transaction id of the request being served so one request can be followed across services."""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import time

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
        return self.stamp(int(record.created), int(record.msecs))

    def stamp(self, whole: int, msecs: int) -> str:
        if self.second[0] != whole:
            self.second = (whole, time.strftime("%Y-%m-%d %H:%M:%S", self.converter(whole)))
        return f"{self.second[1]},{msecs:03d}"


class LineHandler(logging.StreamHandler):
    """``FORMAT`` lines on a stream. It also writes a line handed to it whole (``info_line``),
    without a ``LogRecord``: making one (the caller's frame, the thread and process names,
    the walk through the handlers) was most of the ~30 µs an access line cost, and a
    storage node writes one per request."""

    def __init__(self, stream):
        super().__init__(stream)
        self.line_format = Formatter(FORMAT)
        self.trans_ids = TransIdFilter()
        self.setFormatter(self.line_format)
        self.addFilter(self.trans_ids)

    def as_set_up(self, level: int) -> bool:
        """Whether a record at ``level`` would be written, and in ``FORMAT`` unchanged."""
        return (level >= self.level and self.formatter is self.line_format
                and self.filters == [self.trans_ids])

    def write_line(self, name: str, level: int, message: str) -> None:
        """The line ``emit`` writes for such a record, in one write under the lock."""
        now = time.time_ns()
        line = (f"{self.line_format.stamp(now // 1_000_000_000, now // 1_000_000 % 1000)} "
                f"{os.getpid()} {name} {logging.getLevelName(level)} "
                f"[{current_trans_id.get()}] {message}{self.terminator}")
        with self.lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except Exception:
                self.handleError(logging.makeLogRecord({"name": name, "msg": message}))


def sole_line_handler(logger: logging.Logger, level: int) -> LineHandler | None:
    """soko's handler, if a record of ``logger`` would meet it and nothing else (no other
    handler, no filter: a test capturing the logs, a handler an operator added)."""
    handlers = []
    while logger is not None:
        if logger.filters:
            return None
        handlers += logger.handlers
        logger = logger.parent if logger.propagate else None
    if len(handlers) == 1 and isinstance(handlers[0], LineHandler) and handlers[0].as_set_up(
            level):
        return handlers[0]
    return None


def info_line(logger: logging.Logger, message: str) -> None:
    """``logger.info(message)``, the same line, at a fraction of the cost when soko's
    handler is the only one to write it."""
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = sole_line_handler(logger, logging.INFO)
    if handler is None:
        logger.info(message)
    else:
        handler.write_line(logger.name, logging.INFO, message)


def setup_logging(level: str = "INFO", stream=None) -> None:
    """Routes every ``soko.*`` logger to ``stream`` (stderr by default) with the trans id."""
    handler = LineHandler(stream or sys.stderr)
    root = logging.getLogger("soko")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
