"""Log a warning at most once per interval per key (bad packets must not flood the log)."""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["WarnLimiter"]


class WarnLimiter:
    """``warn(key, msg, *args)`` logs at ``level`` (WARNING) and ``error(...)`` at ERROR, each
    at most once per ``interval`` seconds per key, saying how many similar lines were
    suppressed since."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0,
                 level: int = logging.WARNING) -> None:
        self.logger = logger
        self.interval = interval
        self.level = level
        self._last: dict[Any, float] = {}
        self._suppressed: dict[Any, int] = {}

    def warn(self, key: Any, msg: str, *args: Any) -> bool:
        """Log at WARNING unless ``key`` was logged within the interval; True when logged."""
        return self._log(self.level, key, msg, args, False)

    def error(self, key: Any, msg: str, *args: Any, exc_info: bool = False) -> bool:
        """Log at ERROR (with the current traceback if ``exc_info``) unless ``key`` was logged
        within the interval; True when logged."""
        return self._log(logging.ERROR, key, msg, args, exc_info)

    def _log(self, level: int, key: Any, msg: str, args: tuple[Any, ...], exc_info: bool
             ) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += " (%d similar warnings suppressed)"
            args = (*args, skipped)
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def forget(self, key: Any) -> None:
        """Drop the memory of ``key`` (a peer left)."""
        self._last.pop(key, None)
        self._suppressed.pop(key, None)
