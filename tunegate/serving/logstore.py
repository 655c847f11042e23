"""Where the request log lives: one SQLAlchemy Core schema on SQLite or PostgreSQL.

``serve.request_log`` is a database URL (``sqlite:///logs/requests.sqlite``,
``postgresql://user:pass@host/db``) or, as before, a path to an SQLite file (relative to
the project). SQLite is the embedded default for one service process; PostgreSQL is the
store several replicas share. Both get the same tables from the ``Table`` below, created
or migrated when a writer opens the log:

- **Versioned DDL, not Alembic.** ``tunegate_schema`` holds the schema version the log
  was last migrated to. A migration is a list of added columns per version, applied in
  order under a lock (PostgreSQL: an advisory lock, so two replicas starting at once do
  not both migrate); a log written by a newer tunegate is refused rather than changed.
  One table that only ever gains nullable columns does not need Alembic's revision graph,
  and the migration stays readable in this file. Logs from before the version table
  (SQLite files of earlier releases) are brought up to date by the same column check.
- ``postgresql://`` goes through psycopg 3 (``postgresql+psycopg://``).
- Readers (the drift monitor, retraining, the canary judge's reports) open the log
  read-only: SQLite in ``mode=ro``, PostgreSQL in a read-only transaction.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    create_engine,
    event,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError

from tunegate.core.errors import ConfigError, DataError

SCHEMA_VERSION = 3
"""1: the table of the first release; 2: confidence, feedback, pinning, client, instance,
abstention and rating (``ADDED``); 3: the ``instances`` table (each writing process's
heartbeat, so any replica can tell a dead one's open rows) and the ``deployment`` table
(a fingerprint of the secret that keys caller hashes, which every replica must share)."""
ADDED = {
    2: (
        ("confidence", "REAL"),
        ("feedback", "TEXT"),
        ("feedback_time", "TEXT"),
        ("pinned", "INTEGER NOT NULL DEFAULT 0"),
        ("client", "TEXT"),
        ("instance", "TEXT"),
        ("abstained", "INTEGER"),
        ("rating", "REAL"),
    )
}
"""Columns each version added (nullable or defaulted, so ``ALTER TABLE ... ADD COLUMN``
keeps old rows readable on both engines). REAL is a double on PostgreSQL too."""
_LOCK_KEY = 0x7475_6E65  # "tune": the advisory lock migrations take on PostgreSQL

metadata = MetaData()
requests = Table(
    "requests",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", Text, nullable=False),
    Column("request_id", Text, nullable=False),
    Column("caller", Text),
    Column("endpoint", Text, nullable=False),
    Column("stage", Text),
    Column("version", Text),
    Column("shadow", Integer, nullable=False, server_default="0"),
    Column("input", Text),
    Column("output", Text),
    Column("label", Text),
    Column("valid", Integer),
    Column("latency_ms", Float),
    Column("status", Integer, nullable=False),
    Column("error", Text),
    Column("confidence", Float),
    Column("feedback", Text),
    Column("feedback_time", Text),
    Column("pinned", Integer, nullable=False, server_default="0"),
    Column("client", Text),
    Column("instance", Text),
    Column("abstained", Integer),
    Column("rating", Float),
    sqlite_autoincrement=True,
)
Index("requests_time", requests.c.time)
Index("requests_request_id", requests.c.request_id)
instances = Table(
    "instances",
    metadata,
    Column("instance", Text, primary_key=True),
    Column("seen", Text, nullable=False),
)
"""One row per process that writes the log (``host:pid``) and when it last said it was alive."""
deployment = Table(
    "deployment",
    metadata,
    Column("name", Text, primary_key=True),
    Column("value", Text, nullable=False),
)
"""Facts every process writing the log must agree on (``secret_fingerprint``)."""
schema = Table(
    "tunegate_schema",
    metadata,
    Column("name", Text, primary_key=True),
    Column("version", Integer, nullable=False),
)


REQUEST_LOG_ENV = "TUNEGATE_REQUEST_LOG"


def configured(setting: str) -> str:
    """The log to use: ``TUNEGATE_REQUEST_LOG`` when set, else ``serve.request_log``. A
    database URL carries a password, which belongs in a secret (the environment of a
    replica), not in a params file that git keeps."""
    return os.environ.get(REQUEST_LOG_ENV) or setting


def database_url(where: str | Path, project: Path | None = None) -> str:
    """``serve.request_log`` (a URL, or a path to an SQLite file relative to ``project``) as
    an SQLAlchemy URL."""
    value = str(where)
    if "://" not in value:
        path = Path(value)
        if project is not None and not path.is_absolute():
            path = project / path
        return f"sqlite:///{path.resolve()}"
    for scheme in ("postgresql://", "postgres://"):
        if value.startswith(scheme):
            return "postgresql+psycopg://" + value[len(scheme) :]
    return value


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path | None:
    """The file of an SQLite URL (None for other engines or an in-memory database)."""
    if not is_sqlite(url):
        return None
    database = make_url(url).database
    return Path(database) if database and database != ":memory:" else None


def shown(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url.split(":", 1)[0] + "://..."


def named(where: str | Path) -> str:
    """How a log is named in messages and records: a path as given, a URL without its password."""
    value = str(where)
    return shown(database_url(value)) if "://" in value else value


def local_dir(where: str | Path, project: Path) -> Path:
    """A folder on this machine beside the log (the service's status files): the SQLite
    file's folder, or ``logs/`` under the project for a shared database."""
    path = sqlite_path(database_url(where, project))
    return path.parent if path is not None else project / "logs"


TIMEOUT_SECONDS = 10
"""PostgreSQL: a connection attempt and a statement give up after this long, so a database
that is down or a lock held too long is an error the writer retries, not a wait forever.
A server that stops answering on an open connection (no reply, no reset) is the writer's
to notice: it reports ``failing`` once a write has hung this long (tunegate/serving/logwriter.py)."""

_engines: dict[tuple[str, bool], Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str, readonly: bool = False) -> Engine:
    """One engine per URL and mode in this process (a pool, not a connection per call)."""
    with _engines_lock:
        if (url, readonly) not in _engines:
            _engines[(url, readonly)] = _create(url, readonly)
        return _engines[(url, readonly)]


def _create(url: str, readonly: bool) -> Engine:
    try:
        if is_sqlite(url):
            path = sqlite_path(url)
            if readonly and path is not None:
                url = f"sqlite:///file:{path}?mode=ro&uri=true"
            engine = create_engine(url, connect_args={"timeout": 5})
            event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        ms = TIMEOUT_SECONDS * 1000
        timeouts = {
            "connect_timeout": TIMEOUT_SECONDS,
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
        }
        engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5, connect_args=timeouts)
        return engine.execution_options(postgresql_readonly=True) if readonly else engine
    except (ArgumentError, ModuleNotFoundError) as err:
        raise ConfigError(f"serve.request_log {shown(url)}: not a database URL ({err})") from err


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers (the monitor) beside the writer
    cur.execute("PRAGMA synchronous=NORMAL")  # WAL: survives a service crash; no fsync per row
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def unreachable(url: str, err: DBAPIError) -> DataError:
    said = str(err.orig or err).strip()
    first = said.splitlines()[0] if said else type(err).__name__
    return DataError(f"request log {shown(url)}: {first}")


def migrate(engine: Engine) -> int:
    """Create the tables, or bring an older log up to ``SCHEMA_VERSION``; the version."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        metadata.create_all(conn, checkfirst=True)
        found = conn.execute(select(schema.c.version).where(schema.c.name == "requests")).scalar()
        if found is not None and found > SCHEMA_VERSION:
            raise DataError(
                f"request log schema version {found} is newer than this tunegate's ({SCHEMA_VERSION}); "
                "upgrade tunegate instead of opening it with an older one"
            )
        have = {c["name"] for c in inspect(conn).get_columns("requests")}
        for version in sorted(ADDED):
            for name, kind in ADDED[version]:
                if name not in have:  # a log written by an older version gains the column
                    conn.execute(text(f"ALTER TABLE requests ADD COLUMN {name} {kind}"))
        if found is None:
            conn.execute(schema.insert().values(name="requests", version=SCHEMA_VERSION))
        elif found < SCHEMA_VERSION:
            conn.execute(schema.update().where(schema.c.name == "requests").values(version=SCHEMA_VERSION))
    return SCHEMA_VERSION


def upsert_seen(conn: Any, instance: str, seen: str) -> None:
    """This process's heartbeat: insert its ``instances`` row or move its time."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(instances).values(instance=instance, seen=seen)
    conn.execute(stmt.on_conflict_do_update(index_elements=["instance"], set_={"seen": seen}))


def columns_of(engine: Engine) -> set[str]:
    """The columns the log's ``requests`` table has (an old log may lack the newest)."""
    with engine.connect() as conn:
        return {c["name"] for c in inspect(conn).get_columns("requests")}
