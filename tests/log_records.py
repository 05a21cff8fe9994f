"""A log handler that keeps the records at ERROR and above, for tests that assert none was logged."""

from __future__ import annotations

import logging


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
