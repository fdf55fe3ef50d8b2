"""Log lines: plain text, or one JSON object per line (``STUDIO_LOG_FORMAT=json``, python-json-logger).

Every line written while a job runs carries the job's id, its author, its project and the worker
(``job_context``), so a log system can follow one job across processes. Prompts are never logged: the
context holds ids and names only, and job code logs no parameters.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _JsonFormatter

_job: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("studio_job", default=None)
JOB_FIELDS = ("job_id", "user", "project", "worker")


@contextmanager
def job_context(*, job_id: Any, user: str, project: str, worker: str) -> Iterator[None]:
    """Within this block, every log line of this thread names the job."""
    token = _job.set({"job_id": str(job_id), "user": user, "project": project, "worker": worker})
    try:
        yield
    finally:
        _job.reset(token)


def current_job() -> dict[str, str] | None:
    return _job.get()


class JobContextFilter(logging.Filter):
    """Adds the running job's fields to the record (empty outside a job)."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _job.get()
        for name in JOB_FIELDS:
            if not hasattr(record, name):
                setattr(record, name, context[name] if context else None)
        return True


class JsonFormatter(_JsonFormatter):
    """``{"time", "level", "logger", "message", "job_id", "user", "project", "worker", ...}``; the job's
    fields only on lines about a job."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("timestamp", "time")
        kwargs.setdefault("rename_fields", {"levelname": "level", "name": "logger"})
        super().__init__("%(levelname)s %(name)s %(message)s", *args, **kwargs)

    def add_fields(self, log_record: dict[str, Any], record: logging.LogRecord, message_dict: dict) -> None:
        super().add_fields(log_record, record, message_dict)
        for name in JOB_FIELDS:
            if log_record.get(name) is None:
                log_record.pop(name, None)
