"""structlog set-up: one event per line, JSON for machines, colours for people.

Records from the standard library's logging (aiohttp's server and access logs,
asyncio) go through the same renderer, so the output stays one format.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog


class _StandardErrorHandler(logging.Handler):
    """Writes each record to whatever sys.stderr is at that moment."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # the logging module's own contract for handlers
            self.handleError(record)


class _RedactServerErrors(logging.Filter):
    """Strips request details from aiohttp's "Error handling request" records.

    aiohttp logs a request it cannot parse with the offending line, which may be
    an Authorization header carrying a tenant's API key. Only the exception type
    and the peer address are kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            error = type(record.exc_info[1]).__name__
        else:
            error = None
        peer = (
            record.args[0] if isinstance(record.args, tuple) and record.args else None
        )
        record.msg = "server.request_rejected"
        record.args = ()
        record.exc_info = None
        record.exc_text = None
        record.error = error
        record.peer = str(peer) if peer is not None else None
        return True


def _copy_redacted_fields(
    _logger: Any, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    record = event.get("_record")
    for field in ("error", "peer"):
        value = getattr(record, field, None)
        if value is not None:
            event[field] = value
    return event


def configure_logging(
    level: str = "INFO", log_format: Literal["console", "json"] = "json"
) -> None:
    """Route structlog events and standard logging to stderr at `level`."""
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer()
        if log_format == "console"
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level]
        ),
        # Looked up on every event, so a replaced sys.stderr (pytest's capture,
        # a daemon's redirect) is honoured; caching would pin the first stream.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )

    handler = _StandardErrorHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, _copy_redacted_fields],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    # Libraries' DEBUG output (aiosqlite logs every SQLite call) would drown the
    # service's own events, so they are held at INFO and above.
    root.setLevel(max(logging.getLevelNamesMapping()[level], logging.INFO))
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _RedactServerErrors) for f in server_log.filters):
        server_log.addFilter(_RedactServerErrors())
