import pytest

from esl_controller.config import ConfigError, Settings, load_settings, settings_as_dict


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return str(p)


def test_defaults_without_file():
    s = load_settings(None, environ={})
    assert s == Settings()
    assert s.database_url.startswith("sqlite:///")
    assert s.public_url == "http://127.0.0.1:8080"


def test_file_env_and_flags_precedence(tmp_path):
    path = write(tmp_path, "http:\n  port: 9000\n  host: 0.0.0.0\nlogging:\n  level: DEBUG\n")
    s = load_settings(path, environ={"ESL_CONTROLLER_HTTP__PORT": "9100"})
    assert s.http.port == 9100 and s.http.host == "0.0.0.0" and s.logging.level == "DEBUG"
    s = load_settings(
        path, environ={"ESL_CONTROLLER_HTTP__PORT": "9100"}, overrides={"http": {"port": 9200}}
    )
    assert s.http.port == 9200


def test_config_path_from_env(tmp_path):
    path = write(tmp_path, "node_id: box-7\n")
    assert load_settings(None, environ={"ESL_CONTROLLER_CONFIG": path}).node_id == "box-7"


@pytest.mark.parametrize(
    "text,key",
    [
        ("http:\n  prot: 1\n", "http.prot"),
        ("bogus: 1\n", "bogus"),
        ("http:\n  port: eighty\n", "http.port"),
        ("http:\n  port: true\n", "http.port"),
        ("freeswitch:\n  enabled: maybe\n", "freeswitch.enabled"),
        ("http: 5\n", "http"),
        ("logging:\n  level: LOUD\n", "logging.level"),
        ("http:\n  port: 70000\n", "http.port"),
        ("database:\n  url: mysql://x/y\n", "database.url"),
        ("media:\n  fork_read_interval_ms: 0\n", "media.fork_read_interval_ms"),
        ("media:\n  fork_read_interval_ms: 500\n", "media.fork_read_interval_ms"),
        ("media:\n  recording_writer: disk\n", "media.recording_writer"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path, text, key):
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text), environ={})
    assert key in str(err.value)


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={"ESL_CONTROLLER_HTTP__PORT": "x"})
    assert "http.port" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_settings(None, environ={"ESL_CONTROLLER_NOPE": "1"})
    assert "nope" in str(err.value)


def test_missing_and_invalid_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_settings(str(tmp_path / "missing.yaml"), environ={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(write(tmp_path, "a: [1, 2\n"), environ={})
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(write(tmp_path, "- 1\n- 2\n"), environ={})


def test_settings_are_frozen():
    s = load_settings(None, environ={})
    with pytest.raises(AttributeError):
        s.http.port = 1  # type: ignore[misc]


def test_show_masks_secrets():
    s = load_settings(
        None,
        environ={
            "ESL_CONTROLLER_FREESWITCH__PASSWORD": "hunter2hunter2",
            "ESL_CONTROLLER_DATABASE__URL": "postgresql://app:pgsecret@db:5432/x",
            "ESL_CONTROLLER_AUTH__SUPABASE__JWT_SECRET": "jwtsecretvalue",
        },
    )
    shown = repr(settings_as_dict(s))
    for secret in ("hunter2hunter2", "pgsecret", "jwtsecretvalue"):
        assert secret not in shown
    assert settings_as_dict(s)["database"]["url"] == "postgresql://app:***@db:5432/x"
