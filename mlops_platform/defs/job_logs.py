"""The jobs' console logger: JSON lines when `MLOPS_LOG_FORMAT=json`, Dagster's colored console
logger otherwise.

A JSON line has the fields of `mlops_platform.logs` (`timestamp`, `level`, `logger`, `event`)
plus `run_id`, `job_name`, `step_key`, `op_name` and `partition` from Dagster, `dagster_event`
(the event type: `STEP_START`, `STEP_FAILURE`, ...) with `error` for a failure, and every field
an op attached to its log call. In Dagster 1.13 an op attaches fields through `extra`, as with
Python's logging: `context.log.info("promoted v7", extra={"model_version": "7"})` sets them on
the record (`DagsterLogManager.log` passes its keyword arguments to `Logger._log`), and
`DagsterLogHandler.emit` hands them on to each run logger with the run's metadata.

Dagster instantiates a job's logger only when the run config names it. Wiring, when the
`Definitions` are built: the logger definitions (`job_logger_defs()`) as `Definitions(loggers=...)`
or a job's `logger_defs`, and the run config that selects them (`job_loggers_config()`, the
`loggers` section) as each job's default config. Both are empty in text mode, which keeps
Dagster's default console logger. A partitioned job's default config is that of its single
partitions; a run over a range of partitions takes its run config from whoever starts it (a
sensor's `RunRequest(run_config=...)`, `dg launch --config-json`), which names it there.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import dagster as dg

from mlops_platform.logs import JsonFormatter, log_format

LOGGER_KEY = "console"  # replaces Dagster's default console logger where a job's config names it
_DAGSTER_ATTRIBUTES = ("dagster_meta", "dagster_event", "dagster_event_batch_metadata")
PARTITION_TAG = "dagster/partition"


class DagsterJsonFormatter(JsonFormatter):
    """`JsonFormatter` for records a Dagster run logger receives: the op's message as `event`, the
    run's metadata as fields."""

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        fields = super().fields(record)
        for key in _DAGSTER_ATTRIBUTES:
            fields.pop(key, None)
        meta = getattr(record, "dagster_meta", None)
        if not meta:
            return fields
        head = {key: fields.pop(key) for key in ("timestamp", "level", "logger", "event")}
        head["event"] = meta.get("orig_message", head["event"])
        for key in ("run_id", "job_name", "step_key", "op_name", "resource_name"):
            if meta.get(key) is not None:
                head[key] = meta[key]
        partition = (meta.get("job_tags") or {}).get(PARTITION_TAG)
        if partition is not None:
            head["partition"] = partition
        event = meta.get("dagster_event")
        if event is not None:
            head["dagster_event"] = event.event_type.name
            error = getattr(event.event_specific_data, "error", None)
            if error is not None:
                head["error"] = error.to_string()
        return head | fields


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, default_value="DEBUG", description="the lowest level written"),
    },
    description="JSON lines to stderr (MLOPS_LOG_FORMAT=json): run id, job, step and the op's fields.",
)
def json_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    logger = logging.Logger("dagster", level=init_context.logger_config["log_level"].upper())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(DagsterJsonFormatter())
    logger.addHandler(handler)
    return logger


def job_logger_defs() -> dict[str, dg.LoggerDefinition] | None:
    """The jobs' logger definitions for `MLOPS_LOG_FORMAT` (read now): the JSON logger under
    `console` for json, None (Dagster's default) for text."""
    return {LOGGER_KEY: json_console_logger} if log_format() == "json" else None


def job_loggers_config() -> dict[str, Any] | None:
    """The run config's `loggers` section that selects `job_logger_defs()`'s logger; None in text."""
    return {LOGGER_KEY: {}} if log_format() == "json" else None


def job_run_config() -> dict[str, Any] | None:
    """A job's default run config with only `job_loggers_config()`, for jobs without other config."""
    loggers = job_loggers_config()
    return None if loggers is None else {"loggers": loggers}
