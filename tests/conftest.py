"""Shared test setup: the repository root on ``sys.path``, real SQLite files in tmp_path, and
fresh databases on the real PostgreSQL server.

PostgreSQL: ``CHARTER_TEST_PG_ADMIN`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``)
names a role that may create databases. A test session creates one database of its own
(``charter_t_<pid>_0``, dropped at the end); each test that asks for ``pg_url`` gets a new,
empty schema in it, named by the URL (``?options=-csearch_path%3Dt_<n>``) and dropped after the
test. A schema costs milliseconds where a database costs a checkpoint. ``pg_databases.create()``
makes a whole fresh database for a test that needs one. CI guarantees the server: when it is
unreachable the PostgreSQL tests fail, they are not skipped.

Every run replays identically: at the teardown of each test that passed, every run in every
store the test used is replayed (``charter.replay.replay_run``, :mod:`tests.helpers.replays`)
and the test fails (an error at teardown) naming each run that is not identical, with its
divergence, or that cannot be replayed. The stores checked are the schema ``pg_url`` (and
so ``store_url``) handed out, replayed before it is dropped, and every Charter SQLite database
under the test's ``tmp_path``, whoever wrote it (``db_path``, ``db_url``, a CLI subprocess's
``charter.db``, a durability test's workers), replayed after the test's fixtures are torn
down (a store is opened to read; a file or schema without Charter's tables is passed over).
A test whose log cannot replay by design opts out with
``@pytest.mark.replay_exempt("the reason")`` (``pytestmark = ...`` for a module); a reason is
required. Use it for logs broken on purpose (tampering, a forged chain or marker, truncated
tables, payloads removed by retention, a schema from the future), logs written by hand through
the store API, tools that import only inside a script or a test function, and prose reworded
by monkeypatching (gone by teardown). Stores that outlive a test (module fixtures under
``tmp_path_factory``) are not seen here: replay them in a test of their own, as
``test_redteam.py`` does. ``tests/integration/test_replay_check.py`` tests the check itself.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from psycopg.abc import Query

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    # Tool references such as "tests.helpers.tools:lookup" are imported by module name, as a
    # worker in another process would import them.
    sys.path.insert(0, str(ROOT))

from tests.helpers import replays  # noqa: E402  (the repository root is on sys.path now)

PG_ADMIN_ENV = "CHARTER_TEST_PG_ADMIN"
PG_ADMIN_DEFAULT = "postgresql://postgres@127.0.0.1:5432/postgres"
_TEST_DB = re.compile(r"^charter_t_(\d+)_\d+$")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "charter.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    return f"sqlite:///{db_path}"


class PostgresDatabases:
    """Throwaway databases (through the admin connection) and schemas (in the session's own
    database) for the tests."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self._names = (f"charter_t_{os.getpid()}_{n}" for n in itertools.count())
        try:
            self._conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
        except psycopg.Error as exc:
            reason = str(exc)
        else:
            reason = ""
        if reason:
            parts = urlsplit(admin_url)
            pytest.fail(
                f"PostgreSQL is not reachable at {parts.hostname}:{parts.port or 5432}"
                f" ({reason}). The PostgreSQL tests need the server: start it"
                " (pg_ctlcluster --skip-systemctl-redirect 15 main start) or point"
                f" {PG_ADMIN_ENV} at one whose role may create databases.",
                pytrace=False,
            )
        self._drop_leftovers()
        self._schemas = (f"t_{n}" for n in itertools.count())
        self.session_db = self.create()
        self._session: psycopg.Connection[tuple[object, ...]] | None = None

    def url(self, dbname: str, *, schema: str | None = None) -> str:
        """The admin URL with another database name (and a schema to work in)."""
        parts = urlsplit(self.admin_url)
        query = parts.query
        if schema is not None:
            option = "options=" + quote(f"-csearch_path={schema}")
            query = f"{query}&{option}" if query else option
        return urlunsplit(parts._replace(path=f"/{dbname}", query=query))

    def _in_session_db(self) -> psycopg.Connection[tuple[object, ...]]:
        if self._session is None or self._session.closed or self._session.broken:
            self._session = psycopg.connect(self.url(self.session_db), autocommit=True)
        return self._session

    def _run(self, *statements: Query, admin: bool = False) -> None:
        """Execute on the admin or session connection; a connection the server dropped (a
        test restarted it, another process terminated it) is opened again, once."""
        for attempt in (1, 2):
            if admin and (self._conn.closed or self._conn.broken):
                self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
            conn = self._conn if admin else self._in_session_db()
            try:
                for statement in statements:
                    conn.execute(statement)
                return
            except psycopg.OperationalError:
                if attempt == 2 or not (conn.closed or conn.broken):
                    raise

    def create_schema(self) -> str:
        """A new, empty schema in the session's database; returns its name."""
        name = next(self._schemas)
        self._run(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
        return name

    def drop_schema(self, name: str) -> None:
        # Tests run one at a time: a connection still open here was leaked by this test.
        self._run(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()",
            sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)),
        )

    def create(self) -> str:
        """A new, empty database; returns its name."""
        name = next(self._names)
        self._run(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)), admin=True)
        return name

    def drop(self, name: str) -> None:
        self._run(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)),
            admin=True,
        )

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
        with contextlib.suppress(psycopg.Error):
            self.drop(self.session_db)
        self._conn.close()

    def _drop_leftovers(self) -> None:
        """Drop the test databases of test sessions that died before their teardown."""
        for (name,) in self._conn.execute("SELECT datname FROM pg_database").fetchall():
            found = _TEST_DB.match(name)
            if found and not _alive(int(found.group(1))):
                with contextlib.suppress(psycopg.errors.ObjectInUse):  # someone uses it still
                    self._conn.execute(
                        sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
                    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def pg_databases() -> Iterator[PostgresDatabases]:
    databases = PostgresDatabases(os.environ.get(PG_ADMIN_ENV, PG_ADMIN_DEFAULT))
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def pg_url(request: pytest.FixtureRequest, pg_databases: PostgresDatabases) -> Iterator[str]:
    """A PostgreSQL URL to a fresh, empty place (its own schema), dropped after the test (its
    runs replayed first)."""
    name = pg_databases.create_schema()
    url = pg_databases.url(pg_databases.session_db, schema=name)
    try:
        yield url
    finally:
        try:
            _replay_check(request.node, url)
        finally:
            pg_databases.drop_schema(name)


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, db_path: Path) -> str:
    """A fresh store URL for each backend: a new SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{db_path}"
    return str(request.getfixturevalue("pg_url"))


# -- every run replays identically ------------------------------------------------------------

_PASSED = pytest.StashKey[bool]()
_REPLAY_PROBLEMS = pytest.StashKey[list[str]]()


def _replay_check(item: pytest.Item, url: str) -> None:
    """Replay every run at ``url`` if ``item`` passed and is not exempt; keep the problems."""
    marker = item.get_closest_marker("replay_exempt")
    if marker is not None or not item.stash.get(_PASSED, False):
        return
    try:
        found = replays.problems(url)
    except Exception as exc:  # the check itself broke: say so, as a failure of the test
        found = [f"{url}: replaying its runs raised {exc!r}"]
    item.stash.setdefault(_REPLAY_PROBLEMS, []).extend(found)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_PASSED] = report.passed
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    result = yield  # the fixtures' own teardown first: workers stopped, pg_url checked
    marker = item.get_closest_marker("replay_exempt")
    if marker is not None and not (marker.args and str(marker.args[0]).strip()):
        pytest.fail("replay_exempt needs a reason: @pytest.mark.replay_exempt('why')")
    if isinstance(tmp, Path):
        for path in replays.sqlite_files(tmp):
            _replay_check(item, f"sqlite:///{path}")
    found = item.stash.get(_REPLAY_PROBLEMS, [])
    if found:
        pytest.fail(
            "not every run of this test replays identically (a bug in replay or in recording;"
            " a test that breaks its log on purpose: @pytest.mark.replay_exempt('why')):\n"
            + "\n".join(found),
            pytrace=False,
        )
    return result
