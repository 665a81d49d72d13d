"""The log format both processes share (`STREAMREC_LOG_FORMAT=json`): one JSON object per
line, for a log collector to index without parsing prose.

Fields: `time` (UTC, ISO 8601 with milliseconds), `level`, `logger`, `message`, then
`request_id` and `recommendation_id` when the record carries them (the service's request
context puts them there), and `exception` with the traceback when there is one.
"""

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

#: Record attributes copied into the JSON object when present and set.
CONTEXT_FIELDS = ("request_id", "recommendation_id")


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def json_logging_config(level: str, filters: dict[str, dict[str, Any]] | None = None
                        ) -> dict[str, Any]:
    """A `logging.config.dictConfig` that sends every logger's records, through `filters`,
    to stderr as JSON lines (libraries' own handlers, such as uvicorn's, are replaced)."""
    filters = filters or {}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonLogFormatter}},
        "filters": filters,
        "handlers": {"json": {"class": "logging.StreamHandler", "formatter": "json",
                              "filters": list(filters), "stream": "ext://sys.stderr"}},
        "root": {"level": level.upper(), "handlers": ["json"]},
        "loggers": {name: {"handlers": [], "propagate": True}
                    for name in ("uvicorn", "uvicorn.error", "uvicorn.access")},
    }
