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


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    """A fresh, migrated database URL: a SQLite file, or a private schema in the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'test.db'}"
        return
    ok, why = pg_reachable()
    if not ok:
        pytest.skip(why)
    import psycopg2

    schema = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(PG_URL)
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        from esl_controller import db

        db.close()
        conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        conn.close()


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
