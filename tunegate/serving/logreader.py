"""The request log read-only: what the drift monitor and retraining read (never written,
never migrated by a reader). SQLite is opened in ``mode=ro``, PostgreSQL in a read-only
transaction (tunegate/serving/logstore.py); a log from before a column existed reads it as NULL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from tunegate.core.errors import DataError
from tunegate.serving.logstore import columns_of, engine_for, sqlite_path, unreachable

CLASSIFIED = "endpoint = 'classify' AND shadow = 0 AND status = 200"
"""The /classify answers callers got (not shadow copies, not refusals)."""
GENERATED = "endpoint = 'generate' AND shadow = 0 AND status = 200"
"""The /generate answers callers got."""


@dataclass(frozen=True)
class LogReader:
    url: str

    def _select(
        self, columns: tuple[str, ...], where: str, tail: str, args: dict[str, Any]
    ) -> list[dict[str, Any]]:
        path = sqlite_path(self.url)
        if path is not None and not path.exists():
            raise DataError(f"request log {path} does not exist; serve some traffic first (`tunegate serve`)")
        engine = engine_for(self.url, readonly=True)
        try:
            have = columns_of(engine)
            if not have:
                raise DataError(f"{path or self.url} holds no request log; serve some traffic first")
            # Logs from before a column existed read it as NULL.
            picked = ", ".join(c if c in have else f"NULL AS {c}" for c in columns)
            with engine.connect() as conn:
                found = conn.execute(text(f"SELECT {picked} FROM requests WHERE {where} {tail}"), args).all()
        except DBAPIError as err:
            if path is not None:
                raise DataError(f"{path} is not a tunegate request log: {err.orig}") from err
            raise unreachable(self.url, err) from err
        return [dict(zip(columns, row, strict=True)) for row in found]

    def _answers(
        self, where: str, columns: tuple[str, ...], hours: float | None, last: int | None
    ) -> list[dict[str, Any]]:
        """Rows matching `where`, oldest first: all, those of the last ``hours``, and at most
        the ``last`` newest."""
        args: dict[str, Any] = {}
        if hours is not None:
            where += " AND time >= :since"
            args["since"] = (datetime.now(UTC) - timedelta(hours=hours)).isoformat(timespec="microseconds")
        tail = "ORDER BY id DESC"
        if last is not None:
            tail, args["last"] = tail + " LIMIT :last", last
        return self._select(columns, where, tail, args)[::-1]

    def classified(self, hours: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """The answered /classify requests (see `_answers`)."""
        columns = ("time", "input", "label", "feedback", "confidence", "version", "abstained")
        return self._answers(CLASSIFIED, columns, hours, last)

    def generated(self, hours: float | None = None, last: int | None = None) -> list[dict[str, Any]]:
        """The answered /generate requests (see `_answers`): the input (last user turn), the
        answer text, whether it was valid, and any reference answer or rating callers sent."""
        columns = ("request_id", "time", "input", "output", "valid", "feedback", "rating", "version")
        return self._answers(GENERATED, columns, hours, last)

    def with_references(self) -> list[dict[str, Any]]:
        """The answered /generate requests that have a caller's reference answer, oldest first."""
        columns = ("request_id", "time", "input", "feedback", "version", "output", "feedback_time")
        where = GENERATED + " AND feedback IS NOT NULL AND input IS NOT NULL"
        return self._select(columns, where, "ORDER BY id", {})

    def with_feedback(self) -> list[dict[str, Any]]:
        """The answered /classify requests that have a caller's true label, oldest first."""
        columns = ("request_id", "time", "input", "feedback", "version", "label", "feedback_time")
        where = CLASSIFIED + " AND feedback IS NOT NULL AND input IS NOT NULL"
        return self._select(columns, where, "ORDER BY id", {})
