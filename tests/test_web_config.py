"""The [web] table: strict like every other table, one-line errors naming the key."""

import tomllib

import pytest

from linebox.config import ConfigError, parse_config
from simkit import config_text


def _cfg(tmp_path, web: str):
    return parse_config(tomllib.loads(config_text(tmp_path / "data") + "\n[web]\n" + web),
                        str(tmp_path / "linebox.toml"))


def test_defaults_and_a_listen_address(tmp_path):
    assert parse_config(tomllib.loads(config_text(tmp_path)), "x").web is None
    w = _cfg(tmp_path, "").web
    assert (w.enabled, w.host, w.port, w.tls_cert, w.frame_ancestors) == (True, "0.0.0.0", 8080, None, "'self'")
    w = _cfg(tmp_path, 'listen = "[::1]:8443"\nenabled = false\n').web
    assert (w.enabled, w.host, w.port) == (False, "::1", 8443)


def test_tls_files_are_relative_to_the_config_and_must_exist(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    w = _cfg(tmp_path, 'tls_cert = "c.pem"\ntls_key = "k.pem"\n').web
    assert w.tls_cert == tmp_path / "c.pem" and w.tls_key == tmp_path / "k.pem"


@pytest.mark.parametrize("web, message", [
    ('listen = "8080"', """config: [web] key 'listen': must be "HOST:PORT", like "0.0.0.0:8080\""""),
    ('listen = "0.0.0.0:99999"', """config: [web] key 'listen': must be "HOST:PORT", like "0.0.0.0:8080\""""),
    ('tls_cert = "nope.pem"', "config: [web] key 'tls_cert': no such file: "),
    ('enabled = 1', "config: [web] key 'enabled': must be true or false"),
    ('frame_ancestors = "\'self\'; script-src *"', "config: [web] key 'frame_ancestors': must be CSP sources"),
    ('session_idle_minutes = 0', "config: [web] key 'session_idle_minutes': must be a number from 1 to 10080"),
    ('port = 80', "config: [web]: unknown key 'port'"),
])
def test_bad_web_settings_name_the_key(tmp_path, web, message):
    with pytest.raises(ConfigError) as e:
        _cfg(tmp_path, web)
    assert str(e.value).startswith(message), str(e.value)


def test_a_cert_needs_its_key(tmp_path):
    (tmp_path / "c.pem").write_text("x")
    with pytest.raises(ConfigError, match=r"\[web\] key 'tls_key': tls_cert and tls_key go together"):
        _cfg(tmp_path, 'tls_cert = "c.pem"\n')
