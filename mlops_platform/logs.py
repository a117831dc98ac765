"""Log lines of the model server, the `mlops` CLI and (through `defs/job_logs.py`) the Dagster jobs.

`MLOPS_LOG_FORMAT` picks the format: `text` (the default) writes human lines, `json` one JSON
object per line. Both carry the same fields: `timestamp` (ISO 8601, UTC, milliseconds), `level`,
`logger`, `event` (the message), then every field the call passed as `extra`
(`log.info("request", extra={"request_id": ..., "status": 200})`: `request_id`, `run_id`,
`model_version`, `role`, `status`, `duration_ms`, ...) and, with an exception, its `traceback`.

    2026-11-24T10:03:51.123Z INFO mlops_platform.serving.access: request request_id=r-1 status=200
    {"timestamp":"2026-11-24T10:03:51.123Z","level":"info","logger":"mlops_platform.serving.access",
     "event":"request","request_id":"r-1","status":200}                         (one line, in json)

No Dagster import here: the model server imports this module.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import re
import sys
import time
from itertools import islice
from typing import Any, TextIO

import orjson

FORMAT_VARIABLE = "MLOPS_LOG_FORMAT"
FORMATS = ("text", "json")

# attributes every LogRecord has, set first: the attributes after them came from `extra`
_STANDARD = logging.makeLogRecord({}).__dict__
_STANDARD_COUNT = len(_STANDARD)
_RECORD_ATTRIBUTES = frozenset(_STANDARD) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's colored copy of the message
}
_NEEDS_QUOTES = re.compile(r'[\s"=]')


def log_format() -> str:
    """`MLOPS_LOG_FORMAT`: `text` (unset or empty) or `json`; ValueError for anything else."""
    value = os.environ.get(FORMAT_VARIABLE, "").strip().lower() or "text"
    if value not in FORMATS:
        raise ValueError(
            f"{FORMAT_VARIABLE}={os.environ[FORMAT_VARIABLE]!r} is not a log format: use "
            + " or ".join(FORMATS)
        )
    return value


class _UtcClock:
    """ISO 8601 UTC timestamps with milliseconds; the date and time part is computed once a second
    (kept as one tuple, so threads sharing a formatter never mix two seconds)."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")

    def __call__(self, created: float) -> str:
        second = int(created)
        cached = self._cached
        if cached[0] != second:
            cached = self._cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a log call passed as `extra` (None values left out)."""
    return {
        key: value
        for key, value in islice(record.__dict__.items(), _STANDARD_COUNT, None)
        if value is not None and key not in _RECORD_ATTRIBUTES
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp, level, logger, event, the `extra` fields, traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _UtcClock()

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        """The line's fields, in order; subclasses add their own."""
        fields: dict[str, Any] = {
            "timestamp": self._clock(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            fields.setdefault(key, value)
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            fields["traceback"] = record.exc_text
        if record.stack_info:
            fields["stack"] = self.formatStack(record.stack_info)
        return fields

    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(
            self.fields(record), default=str, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
        ).decode()


class TextFormatter(logging.Formatter):
    """A human line with the same fields: `timestamp LEVEL logger: event key=value ...`, then the
    traceback; a value with spaces, quotes or `=` is quoted."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = _UtcClock()

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            self._clock(record.created),
            " ",
            record.levelname,
            " ",
            record.name,
            ": ",
            record.getMessage(),
        ]
        for key, value in islice(record.__dict__.items(), _STANDARD_COUNT, None):
            if value is None or key in _RECORD_ATTRIBUTES:
                continue
            if value.__class__ is not str:
                value = str(value)
            elif not value or _NEEDS_QUOTES.search(value):
                value = json.dumps(value, ensure_ascii=False)
            parts += (" ", key, "=", value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts += ("\n", record.exc_text)
        if record.stack_info:
            parts += ("\n", self.formatStack(record.stack_info))
        return "".join(parts)


def formatter(fmt: str | None = None) -> logging.Formatter:
    """The formatter of `fmt` (default: `MLOPS_LOG_FORMAT`)."""
    return JsonFormatter() if (fmt or log_format()) == "json" else TextFormatter()


def server_log_config(fmt: str | None = None) -> dict[str, Any]:
    """`logging.config.dictConfig` for `mlops serve` and each uvicorn worker (uvicorn's `log_config`):
    uvicorn's lines, the platform's (`mlops_platform.*`, the access lines included) and other
    libraries' warnings to stderr in `fmt` (default: `MLOPS_LOG_FORMAT`). uvicorn's own access
    lines stay off: the platform's carry the request id and model version."""
    fmt = fmt or log_format()
    formatter_class = "JsonFormatter" if fmt == "json" else "TextFormatter"
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"mlops": {"()": f"{__name__}.{formatter_class}"}},
        "handlers": {
            "mlops": {"class": "logging.StreamHandler", "formatter": "mlops", "stream": "ext://sys.stderr"}
        },
        "loggers": {
            "uvicorn": {"handlers": ["mlops"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "mlops_platform": {"handlers": ["mlops"], "level": "INFO", "propagate": False},
        },
        "root": {"handlers": ["mlops"], "level": "WARNING"},
    }


def configure_server(fmt: str | None = None) -> dict[str, Any]:
    """Configure logging of the `mlops serve` process as its workers will be; returns the config
    (`server_log_config`) for uvicorn's `log_config`."""
    config = server_log_config(fmt)
    logging.config.dictConfig(config)
    return config


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is when a record is emitted (a test may swap it)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr


_cli_handler: logging.Handler | None = None


def configure_cli() -> None:
    """The `mlops` CLI's logging: warnings and errors of `mlops_platform.*` to stderr in
    `MLOPS_LOG_FORMAT`; ValueError when that names no format. The CLI's own output stays print()."""
    global _cli_handler
    handler = _StderrHandler()
    handler.setFormatter(formatter())
    handler.setLevel(logging.WARNING)
    logger = logging.getLogger("mlops_platform")
    if _cli_handler is not None:
        logger.removeHandler(_cli_handler)
    logger.addHandler(handler)
    _cli_handler = handler


def log_error(command: str, message: str, stream: TextIO | None = None) -> None:
    """A failed `mlops <command>`: `mlops <command>: message` in text, a JSON line (level `error`,
    `event` the message, `command`) in json. Text when `MLOPS_LOG_FORMAT` is itself the error."""
    stream = stream or sys.stderr
    try:
        fmt = log_format()
    except ValueError:
        fmt = "text"
    if fmt == "text":
        print(f"mlops {command}: {message}", file=stream, flush=True)
        return
    record = logging.LogRecord("mlops_platform.cli", logging.ERROR, __file__, 0, message, None, None)
    record.command = command
    print(JsonFormatter().format(record), file=stream, flush=True)
