"""Test setup: gevent patched first; the database fixtures run against SQLite and, when reachable, PostgreSQL."""

from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import socket  # noqa: E402
import uuid  # noqa: E402

import pytest  # noqa: E402

PG_URL = os.environ.get("ESL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
_pg_state: dict[str, object] = {}


def pg_reachable() -> tuple[bool, str]:
    """Whether the PostgreSQL test database answers (checked once)."""
    if "ok" not in _pg_state:
        try:
            import psycopg2

            host = PG_URL.split("@", 1)[-1].split("/", 1)[0]
            h, _, p = host.partition(":")
            with socket.create_connection((h, int(p or 5432)), timeout=2):
                pass
            conn = psycopg2.connect(
                PG_URL.replace("postgresql://", "postgres://"), connect_timeout=3
            )
            conn.close()
            _pg_state.update(ok=True, why="")
        except Exception as exc:  # noqa: BLE001 - any failure means "skip with the reason"
            _pg_state.update(ok=False, why=f"PostgreSQL at {PG_URL} not reachable: {exc}")
    return bool(_pg_state["ok"]), str(_pg_state["why"])


class _PgSchema:
    """One migrated schema in the PostgreSQL test database for the whole run, emptied before each test.

    Creating and migrating a schema per test took about half a second (the DDL creates files on disk);
    emptying the tables takes a few milliseconds. Migrations themselves are tested on fresh SQLite files."""

    def __init__(self) -> None:
        import psycopg2

        self.name = f"t_{uuid.uuid4().hex[:12]}"
        self.url = f"{PG_URL}?options=-csearch_path%3D{self.name}%20-csynchronous_commit%3Doff"
        self.conn = psycopg2.connect(PG_URL, connect_timeout=5)
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            # tests need no durability: commits do not wait for the WAL to reach the disk
            cur.execute("SET synchronous_commit TO off")
            cur.execute("SET lock_timeout TO '20s'")  # a test that left a lock: fail, never hang
            cur.execute(f"CREATE SCHEMA {self.name}")
        from esl_controller import db

        database = db.connect(self.url)
        try:
            with database.connection_context():
                db.migrate()
        finally:
            db.close()
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s"
                " AND tablename <> 'schema_migration'",
                (self.name,),
            )
            self.tables = [f'{self.name}."{r[0]}"' for r in cur.fetchall()]
            cur.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = %s", (self.name,))
            self.sequences = [f'{self.name}."{r[0]}"' for r in cur.fetchall()]
            cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            self.superuser = bool(cur.fetchone()[0])

    def empty(self) -> None:
        with self.conn.cursor() as cur:
            if not self.superuser:  # TRUNCATE needs no privileges beyond ownership, but is slower
                cur.execute(f"TRUNCATE {', '.join(self.tables)} RESTART IDENTITY CASCADE")
                return
            statements = ["BEGIN", "SET LOCAL session_replication_role = replica"]  # no FK order
            statements += [f"DELETE FROM {t}" for t in self.tables]
            statements += [f"ALTER SEQUENCE {s} RESTART" for s in self.sequences]
            cur.execute(";".join(statements + ["COMMIT"]))

    def drop(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA {self.name} CASCADE")
        self.conn.close()


@pytest.fixture(scope="session")
def _pg_schema():
    holder: list[_PgSchema] = []
    yield holder  # created by the first PostgreSQL test (a run with none never connects)
    for schema in holder:
        schema.drop()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, _pg_schema):
    """A fresh, migrated database URL: a SQLite file, or the run's PostgreSQL schema, emptied."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    ok, why = pg_reachable()
    if not ok:
        pytest.skip(why)
    if not _pg_schema:
        _pg_schema.append(_PgSchema())
    schema = _pg_schema[0]
    schema.empty()
    try:
        yield schema.url
    finally:
        from esl_controller import db

        db.close()


@pytest.fixture
def settings(tmp_path, db_url):
    from esl_controller.config import load_settings

    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database": {"url": db_url},
            # every server on an ephemeral port, so tests never collide with each other or a running service
            "freeswitch": {"outbound_port": 0, "fork_port": 0},
            "media": {"webcall_port": 0, "listen_port": 0, "warm_stt": False},
        },
    )


@pytest.fixture
def database(settings):
    from esl_controller import db

    database = db.connect(settings.database_url)
    with database.connection_context():
        db.migrate()
    yield database
    db.close()


@pytest.fixture
def app(settings, database):
    from api import create_app

    app = create_app(settings)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def api_key(settings, database):
    from esl_controller.security.api_keys import create_key

    with database.connection_context():
        return create_key("test", settings.org_id).key


@pytest.fixture
def client(app, api_key):
    """A test client that sends the API key as a bearer token."""
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return c


@pytest.fixture
def anon(app):
    return app.test_client()
