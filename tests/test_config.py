from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config import load_config
from edge.errors import ConfigError, SourceError
from edge.sources import source_from_uri

VALID = """
device_id = "gate-01"
[model]
path = "model.onnx"
[[cameras]]
name = "gate"
source = "synthetic://shapes?fps=15&seed=1"
[mqtt]
url = "mqtt://127.0.0.1:1883"
[frames]
interval_s = 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_valid_config_loads_with_defaults_and_resolves_the_model_path(tmp_path):
    config = load_config(write(tmp_path, VALID))
    assert config.device_id == "gate-01"
    assert config.model.path == tmp_path / "model.onnx"
    assert config.model.backend == "auto"
    assert config.topic_prefix == "edge/gate-01"
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.tls) == ("127.0.0.1", 1883, False)
    assert config.frames.interval_s == 10 and config.stats.interval_s == 5


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("[model]", "[model]\nbackend = \"cuda\""),
         r"model\.backend: .*'auto', 'onnxruntime' or 'tensorrt'"),
        (("[mqtt]", "[mqtt]\nport = 1883"), r"mqtt\.port: unknown key"),
        (('name = "gate"', 'name = "gate"\nsorce = "x"'), r"cameras\.0\.sorce: unknown key"),
        (("interval_s = 10", 'interval_s = "often"'), r"frames\.interval_s: .*'often'"),
        (("interval_s = 10", "interval_s = -1"), r"frames\.interval_s: must be at least 0; got -1"),
        (("[mqtt]", "[mqtt]\nqos = 7"), r"mqtt\.qos: must be at most 1; got 7"),
        (('url = "mqtt://127.0.0.1:1883"', 'url = "http://x"'), r"mqtt\.url: .*mqtt://host"),
        (('name = "gate"', 'name = "gate/1"'),
         r"cameras\.0\.name: use 1 to 64 characters: letters a-z and A-Z \(no accented ones\), "
         r"digits and _ - \(no spaces; it is part of MQTT topics\); got 'gate/1'"),
        # a user check: "letters" refused 'café' (a model's labels may hold accents)
        (('name = "gate"', 'name = "café"'), r"cameras\.0\.name: .*\(no accented ones\)"),
        (("device_id = ", "device_id = \"my dev\"\nx = "), r"device_id: .*digits and _ \. -"),
        (('name = "gate"', 'name = "cmd"'), r"cameras\.0\.name: camera name 'cmd' is the "
                                            r"commands' topic level"),
        (('path = "model.onnx"', ""), r"model\.path: required key is missing"),
        (("[[cameras]]\nname = \"gate\"\nsource = \"synthetic://shapes?fps=15&seed=1\"", ""),
         r"cameras: required key is missing"),
        (("device_id", "colour = 1\ndevice_id"), r"colour: unknown key; remove it or check"),
        # a misspelt key gets the one it most likely meant (a user check)
        (('name = "gate"', 'name = "gate"\nstal_s = 5'),
         r"cameras\.0\.stal_s: unknown key; did you mean stall_s\?"),
        (("[mqtt]", "[mqtt]\nreconect_max_s = 5"),
         r"mqtt\.reconect_max_s: unknown key; did you mean reconnect_max_s\?"),
        (("device_id = ", "device-id = \"x\"\ndevice_id = "),
         r"device-id: unknown key; did you mean device_id\?"),
        # keys other camera tools' configs use (Frigate's mqtt host and port, a stream url)
        (("[mqtt]", "[mqtt]\nhost = \"10.0.0.2\""),
         r"mqtt\.host: unknown key; did you mean url \(mqtt://HOST:PORT, mqtts:// for TLS\)\?"),
        (("[mqtt]", "[mqtt]\nuser = \"cam\""), r"mqtt\.user: unknown key; did you mean username\?"),
        (('source = "synthetic', 'url = "synthetic'),
         r"cameras\.0\.url: unknown key; did you mean source\?"),
        # two letters swapped in a short key score under difflib's cutoff (a user check)
        (("[mqtt]", "[mqtt]\nqso = 1"), r"mqtt\.qso: unknown key; did you mean qos\?"),
        # TOML's true where words are taken read "got True", as Python writes it (a user check)
        (("[mqtt]", "[drift]\nenabled = true\n[mqtt]"),
         r"drift\.enabled: takes one of 'auto', 'on' or 'off', in quotes \(a TOML true or "
         r"false is none of them\); got true$"),
        # a section given as a value (a user check: pydantic's "Input should be an object")
        (('[model]\npath = "model.onnx"', 'model = "model.onnx"'),
         r"model: is a section, not a value: write \[model\] on a line of its own and its keys "
         r"below it \(path = \.\.\. for this value\), as systemd/edge\.example\.toml does; "
         r"got 'model\.onnx'$"),
        (('device_id = "gate-01"', 'device_id = "gate-01"\ntracking = "on"'),
         r"tracking: is a section, not a value: write \[tracking\] on a line of its own and its "
         r"keys below it, as systemd/edge\.example\.toml does; got 'on'"),
    ],
)
def test_bad_configs_name_the_key_and_what_was_expected(tmp_path, change, expected):
    text = VALID.replace(*change)
    assert text != VALID
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_a_line_on_a_cameras_or_zones_key_names_them(tmp_path):
    """A user check: a 2-point zone was named `cameras.0.zones.0.points` alone, where every
    other zone error names the camera and the zone."""
    text = ('[model]\npath = "model.onnx"\n'
            '[[cameras]]\nname = "front"\nsource = "synthetic://shapes"\n'
            '[[cameras.zones]]\nname = "porch"\npoints = [[1, 2], [3, 4]]\n'
            '[[cameras]]\nname = "back"\nsource = "synthetic://shapes"\nstal_s = 3\n'
            '[[cameras]]\nname = "side yard"\nsource = "synthetic://shapes"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    lines = str(caught.value).splitlines()[1:]
    assert lines[:2] == [
        "  cameras.0.zones.0.points: needs at least 3 items; got 2 (camera front, zone porch)",
        "  cameras.1.stal_s: unknown key; did you mean stall_s? (camera back)"]
    assert lines[2].startswith("  cameras.2.name: ") and lines[2].endswith("got 'side yard'")


def test_a_calibration_cache_is_found_beside_the_config_as_the_model_is(tmp_path):
    assert load_config(write(tmp_path, VALID)).model.calibration_cache is None
    text = VALID.replace('path = "model.onnx"', 'path = "model.onnx"\n'
                                                'calibration_cache = "model.cache"')
    assert text != VALID
    with pytest.raises(ConfigError, match=r"model\.calibration_cache: .*model\.cache is not "
                                          r"there: give the calibration cache"):
        load_config(write(tmp_path, text))  # a user check: accepted without a word
    (tmp_path / "model.cache").write_text("TRT-100300-EntropyCalibration2\n")
    assert load_config(write(tmp_path, text)).model.calibration_cache == tmp_path / "model.cache"


@pytest.mark.parametrize(("after", "lines", "expected"), [
    # user checks: each was accepted without a word
    ("[mqtt]\n", 'outbox_path = "ob.sqlite"\n',
     r'outbox_path is set, but outbox = "memory" keeps waiting messages in memory .* set '
     r'outbox = "disk"'),
    ("[mqtt]\n", "reconnect_min_s = 60\nreconnect_max_s = 5\n",
     r"reconnect_min_s \(60\) is more than reconnect_max_s \(5\)"),
    ("[model]\n", 'engine_dir = "{tmp}/edge.toml"\n',
     r"model\.engine_dir: .*edge\.toml is a file: give the folder engines are cached in"),
])
def test_settings_that_cannot_mean_what_they_say_are_refused(tmp_path, after, lines, expected):
    text = VALID.replace(after, after + lines.replace("{tmp}", str(tmp_path)))
    assert text != VALID
    with pytest.raises(ConfigError, match=expected):
        load_config(write(tmp_path, text))


def test_a_config_saved_with_a_byte_order_mark_is_read(tmp_path):
    """A user check: Notepad's UTF-8 (a BOM first) read as "not valid TOML: Invalid statement
    (at line 1, column 1)"."""
    path = tmp_path / "edge.toml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_config(path).device_id == "gate-01"


def test_duplicate_camera_names_are_rejected_naming_where_and_the_fix(tmp_path):
    """A user check: "repeated: cam1" named neither the entries nor what to do."""
    text = VALID + '[[cameras]]\nname = "gate"\nsource = "synthetic://shapes"\n'
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "cameras: camera names must be unique (each names its topics): 'gate' at cameras.0 " \
           "and cameras.1; rename all but one" in str(caught.value)


def test_relative_paths_in_the_config_are_its_folders_whatever_the_working_directory(
        tmp_path, monkeypatch):
    """A user check: a password_file beside the config, given by its name, was looked for in
    the working directory (the state directory under systemd)."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "edge.pass").write_text("secret\n")
    (folder / "edge.pass").chmod(0o600)
    (folder / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    text = VALID.replace('url = "mqtt://127.0.0.1:1883"', 'url = "mqtts://broker"\n'
                         'username = "edge"\npassword_file = "edge.pass"\nca_file = "ca.pem"\n'
                         'outbox = "disk"\noutbox_path = "state/outbox.sqlite"')
    text += '[drift]\nreference = "profiles/model.drift.json"\n'
    text = text.replace('path = "model.onnx"', 'path = "model.onnx"\nengine_dir = "engines"')
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_config(write(folder, text))
    assert config.mqtt.password_file == folder / "edge.pass"
    assert config.mqtt.password_value({}) == "secret"
    assert config.mqtt.ca_file == folder / "ca.pem"
    assert config.mqtt.outbox_path == folder / "state" / "outbox.sqlite"
    assert config.model.engine_dir == folder / "engines"
    assert config.drift.reference == folder / "profiles" / "model.drift.json"
    absolute = load_config(write(folder, text.replace('"edge.pass"',
                                                      f'"{folder / "edge.pass"}"')))
    assert absolute.mqtt.password_file == folder / "edge.pass"


def test_a_path_the_error_names_is_not_repeated_after_it(tmp_path):
    """A user check: `cannot read /etc/edge/nopass: ...; got '/etc/edge/nopass'`."""
    text = VALID.replace('url = "mqtt://127.0.0.1:1883"',
                         'url = "mqtt://127.0.0.1:1883"\nusername = "u"\npassword_file = "nopass"')
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    line = str(refused.value).splitlines()[-1]
    assert line == (f"  mqtt.password_file: cannot read {tmp_path / 'nopass'}: No such file or "
                    "directory; give the path of an existing file the daemon's user can read")


def test_missing_and_malformed_files(tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match=f"^config {tmp_path} is a folder; pass the TOML file"):
        load_config(tmp_path)
    # a service user and a root-only config (a user check: "pass an existing TOML file",
    # though it existed); the refusal is simulated, as root (CI) reads anything
    config = write(tmp_path, VALID)

    def refused(*args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", refused)
    with pytest.raises(ConfigError, match=re.escape(f"config {config} cannot be read by ")
                       + r"(user \S+ \()?uid \d+\)?: permission denied; give that user read "
                       r"access to it and its folders \(as systemd/README.md sets it up: chown "
                       r"root:edge, chmod 0640\)"):
        load_config(config)
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="not valid TOML") as raised:
        load_config(write(tmp_path, "[model\n"))
    assert "given twice" not in str(raised.value)  # no hint where none fits
    with pytest.raises(ConfigError, match=r"Cannot overwrite a value .*; a key or table is given "
                                          r"twice"):
        load_config(write(tmp_path, 'device_id = "a"\ndevice_id = "b"\n'))


ZONE = '[[cameras.zones]]\nname = "a"\npoints = [[0, 0], [9, 0], [9, 9]]\n'
CAMERA = '[[cameras]]\nname = "gate"\nsource = "synthetic://shapes"\n'


@pytest.mark.parametrize(("tables", "problem"), [
    (ZONE, r"cameras is a table \(\[cameras.zones\]\), not a list of cameras: each camera "
           r"starts with \[\[cameras\]\] \(two brackets\), and its \[\[cameras.zones\]\] and "
           r"\[cameras.sampling\] follow that line$"),
    (CAMERA.replace("[[cameras]]", "[cameras]"), r"cameras is a table \(\[cameras\]\), not a "
                                                 r"list of cameras"),
    (ZONE + CAMERA, r"not valid TOML: Cannot overwrite a value \(at line \d+, column \d+\); a "
                    r"key or table is given twice, or a camera's \[\[cameras.zones\]\] or "
                    r"\[cameras.sampling\] comes before the \[\[cameras\]\] it belongs to$"),
])
def test_a_cameras_table_out_of_place_is_named(tmp_path, tables, problem):
    """A user check: a zone placed before any [[cameras]] read "cameras: Input should be a
    valid array", and with a camera after it a bare TOML error."""
    with pytest.raises(ConfigError, match=problem):
        load_config(write(tmp_path, '[model]\npath = "m.onnx"\n' + tables))


PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def mqtt_config(tmp_path: Path, lines: str) -> Path:
    """VALID with `lines` added to its [mqtt] section."""
    return write(tmp_path, VALID.replace('url = "mqtt://127.0.0.1:1883"', lines))


@pytest.mark.parametrize(
    ("mqtt_lines", "expected"),
    [
        # strict types: no string-typed numbers, no booleans as numbers, no nan/inf
        ('url = "mqtt://h"\nkeepalive_s = "30"', r"mqtt\.keepalive_s: .*valid integer; got '30'"),
        ('url = "mqtt://h"\nqos = true', r"mqtt\.qos: .*valid integer; got true"),
        ('url = "mqtt://h"\ntls_insecure = 1', r"mqtt\.tls_insecure: .*valid boolean; got 1"),
        ('url = "mqtt://h"\nreconnect_max_s = nan', r"mqtt\.reconnect_max_s: .*finite"),
        ('url = "mqtt://h"\noutbox_max_age_s = inf', r"mqtt\.outbox_max_age_s: .*finite"),
        ('url = "mqtt://h"\noutbox = "cloud"', r"mqtt\.outbox: .*'memory' or 'disk'"),
        ('url = "mqtt://h"\noutbox_max_mb = 0', r"mqtt\.outbox_max_mb: must be more than 0; got 0"),
        # an empty path was taken as the config's folder, and named as that in the error
        ('url = "mqtt://h"\noutbox = "disk"\noutbox_path = " "',
         r"mqtt\.outbox_path: is empty; give the SQLite file .* e\.g\. /var/lib/edge/outbox"),
        # the topic prefix
        ('url = "mqtt://h"\nprefix = "edge/#"', r"mqtt\.prefix: .*wildcards"),
        ('url = "mqtt://h"\nprefix = "edge/+/x"', r"mqtt\.prefix: .*wildcards"),
        ('url = "mqtt://h"\nprefix = ""', r"mqtt\.prefix: .*non-empty levels"),
        ('url = "mqtt://h"\nprefix = "/edge"', r"mqtt\.prefix: .*leading or trailing"),
        ('url = "mqtt://h"\nprefix = "edge/"', r"mqtt\.prefix: .*leading or trailing"),
        ('url = "mqtt://h"\nprefix = "edge//gate"', r"mqtt\.prefix: .*non-empty levels"),
        # TLS settings need mqtts://; files must exist and be PEM
        ('url = "mqtt://h"\nca_file = "{pem}"', r"mqtt: .*ca_file set, but url is mqtt://"),
        ('url = "mqtt://h"\ntls_insecure = true', r"mqtt: .*tls_insecure set, but url is mqtt"),
        ('url = "mqtts://h"\nca_file = "{tmp}/absent.pem"',
         r"mqtt\.ca_file: .*cannot read .*absent\.pem: No such file"),
        ('url = "mqtts://h"\ncertfile = "{tmp}/absent.pem"\nkeyfile = "{pem}"',
         r"mqtt\.certfile: .*cannot read"),
        ('url = "mqtts://h"\nca_file = "{der}"', r"mqtt\.ca_file: .*not a PEM file"),
        ('url = "mqtts://h"\ncertfile = "{pem}"', r"mqtt: .*certfile and keyfile go together"),
        # passwords
        ('url = "mqtt://h"\nusername = "u"\npassword_file = "{tmp}/absent"',
         r"mqtt\.password_file: .*cannot read"),
        ('url = "mqtt://h"\nusername = "u"\npassword = "p"\npassword_file = "{pem}"',
         r"mqtt: .*alternatives"),
        ('url = "mqtt://h"\npassword = "p"', r"mqtt: .*needs a username"),
    ],
)
def test_bad_mqtt_settings_name_the_key(tmp_path, mqtt_lines, expected):
    (tmp_path / "ca.pem").write_text(PEM)
    (tmp_path / "ca.der").write_bytes(b"\x30\x82\x01\x0a" * 8)
    lines = mqtt_lines.format(pem=tmp_path / "ca.pem", der=tmp_path / "ca.der", tmp=tmp_path)
    with pytest.raises(ConfigError, match=expected):
        load_config(mqtt_config(tmp_path, lines))


def test_strict_types_outside_mqtt(tmp_path):
    for change, expected in [
        (("interval_s = 10", 'interval_s = "10"'), r"frames\.interval_s: .*got '10'"),
        (("interval_s = 10", "interval_s = inf"), r"frames\.interval_s: .*finite"),
        (("[model]", "[model]\nthreads = true"), r"model\.threads: .*valid integer"),
        (("[model]", "[model]\nbuild_engine = 0"), r"model\.build_engine: .*valid boolean"),
    ]:
        with pytest.raises(ConfigError, match=expected):
            load_config(write(tmp_path, VALID.replace(*change)))


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "edge.toml"
    path.write_bytes(VALID.replace('"gate-01"', '"gate-\xe9"').encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte \d+ is 0xe9\).*re-save"):
        load_config(path)


def test_secrets_are_never_echoed_by_validation(tmp_path):
    secret = "hunter2-s3cret"
    cases = [
        f'url = "mqtts://user:{secret}@broker:8883"',
        f'url = "mqtt://h"\nusername = "u"\npassword = "{secret}"\npassword_file = "/x"',
        f'url = "mqtt://h"\nusername = "u"\npassword = ["{secret}"]',
        f'url = "mqtt://h"\npassword = "{secret}"',  # no username: the model-level check
        f'url = "mqtt://user:{secret}@h:99999"',
    ]
    for lines in cases:
        with pytest.raises(ConfigError) as caught:
            load_config(mqtt_config(tmp_path, lines))
        assert secret not in str(caught.value), str(caught.value)
        assert "mqtt" in str(caught.value)


@pytest.mark.parametrize("url", ["mqtt://127.0.0.1:0", "mqtts://broker:00",
                                 "mqtt://broker:65536"])
def test_a_port_no_broker_can_listen_on_is_a_config_error(tmp_path, url):
    """A user check: `:0` passed, and the daemon retried a port nothing listens on for ever."""
    with pytest.raises(ConfigError, match=r"mqtt\.url: .*port from 1 to 65535"):
        load_config(mqtt_config(tmp_path, f'url = "{url}"'))


def test_user_info_in_the_url_is_rejected_and_points_to_the_alternatives(tmp_path):
    with pytest.raises(ConfigError, match=r"mqtt\.url: .*user info .*password_file") as caught:
        load_config(mqtt_config(tmp_path, 'url = "mqtts://edge:pw@broker"'))
    assert "pw@" not in str(caught.value)


def test_password_sources_inline_file_and_environment(tmp_path, caplog):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    secret_file.chmod(0o600)
    with_file = load_config(mqtt_config(
        tmp_path, f'url = "mqtt://h"\nusername = "u"\npassword_file = "{secret_file}"'))
    assert with_file.mqtt.password_value({"EDGE_MQTT_PASSWORD": "env"}) == "from-file"
    assert "can be read by every user" not in caplog.text
    from_env = load_config(mqtt_config(tmp_path, 'url = "mqtt://h"\nusername = "u"'))
    assert from_env.mqtt.password_value({"EDGE_MQTT_PASSWORD": "env"}) == "env"
    assert from_env.mqtt.password_value({}) is None
    inline = load_config(mqtt_config(
        tmp_path, 'url = "mqtt://h"\nusername = "u"\npassword = "inline-pw"'))
    assert inline.mqtt.password_value({"EDGE_MQTT_PASSWORD": "env"}) == "inline-pw"
    assert "inline-pw" not in repr(inline)
    # a user check: the environment's password was ignored without a word
    assert with_file.mqtt.ignored_password_env({"EDGE_MQTT_PASSWORD": "env"}) == (
        f"$EDGE_MQTT_PASSWORD is set but mqtt.password_file {secret_file} is used: the config's "
        "password comes first; remove one of them")
    assert inline.mqtt.ignored_password_env({"EDGE_MQTT_PASSWORD": "env"}).startswith(
        "$EDGE_MQTT_PASSWORD is set but mqtt.password is used")
    assert with_file.mqtt.ignored_password_env({}) is None
    assert from_env.mqtt.ignored_password_env({"EDGE_MQTT_PASSWORD": "env"}) is None
    anonymous = load_config(mqtt_config(tmp_path, 'url = "mqtt://h"'))
    assert anonymous.mqtt.ignored_password_env({"EDGE_MQTT_PASSWORD": "env"}) == (
        "$EDGE_MQTT_PASSWORD is set but mqtt.username is not: the password goes only with a "
        "user name; set mqtt.username, or unset the variable")
    assert anonymous.mqtt.ignored_password_env({}) is None
    # ... and a file of two lines was sent whole, refused as "not authorized"
    secret_file.write_text("from-file\r\nsecond line\n")
    with pytest.raises(ConfigError, match=re.escape(
            f"mqtt.password_file {secret_file} holds more than one line; leave only the "
            "password in it")):
        with_file.mqtt.password_value({})


def test_a_world_readable_password_file_warns(tmp_path, caplog):
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    secret_file.chmod(0o644)
    load_config(mqtt_config(
        tmp_path, f'url = "mqtt://h"\nusername = "u"\npassword_file = "{secret_file}"'))
    assert f"can be read by every user; restrict it with `chmod o-rwx {secret_file}`" in \
        caplog.text
    assert "from-file" not in caplog.text


def test_a_password_written_in_a_world_readable_config_warns(tmp_path, caplog):
    """A world-readable password_file was warned about, the same password written in a
    world-readable config was not (an operator's check)."""
    path = mqtt_config(tmp_path, 'url = "mqtt://h"\nusername = "u"\npassword = "inline-pw"')
    path.chmod(0o644)
    load_config(path)
    assert (f"mqtt.password is written in {path}, which every user can read; move it to "
            "mqtt.password_file (root:edge, mode 0640) or $EDGE_MQTT_PASSWORD, or restrict the "
            f"config with `chmod o-rwx {path}`") in caplog.text
    assert "inline-pw" not in caplog.text
    caplog.clear()
    path.chmod(0o640)
    load_config(path)
    assert "every user can read" not in caplog.text


def test_a_password_file_for_the_services_group_is_not_warned_about(tmp_path, caplog):
    """The documented set-up, root:edge with mode 0640, was told to `chmod 600`, which
    locks the service's user out of a root-owned file (exit 2, and no restart)."""
    secret_file = tmp_path / "password"
    secret_file.write_text("from-file\n")
    secret_file.chmod(0o640)
    load_config(mqtt_config(
        tmp_path, f'url = "mqtt://h"\nusername = "u"\npassword_file = "{secret_file}"'))
    assert "password_file" not in caplog.text


def test_tls_client_certificate_settings_load(tmp_path):
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_text(PEM)
    config = load_config(mqtt_config(
        tmp_path, 'url = "mqtts://broker"\nca_file = "ca.pem"\ncertfile = "client.pem"\n'
                  'keyfile = "client.key"\noutbox = "disk"\noutbox_path = "state/outbox.db"'
        .replace('"ca.pem"', f'"{tmp_path}/ca.pem"')
        .replace('"client.pem"', f'"{tmp_path}/client.pem"')
        .replace('"client.key"', f'"{tmp_path}/client.key"')))
    assert (config.mqtt.tls, config.mqtt.port) == (True, 8883)
    assert config.mqtt.keyfile == tmp_path / "client.key"
    assert config.mqtt.outbox_path == tmp_path / "state" / "outbox.db"


def test_log_section(tmp_path):
    config = load_config(write(tmp_path, VALID + '[log]\nlevel = "debug"\n'
                                                 'summary_interval_s = 30\n'))
    assert (config.log.level, config.log.summary_interval_s) == ("debug", 30)
    with pytest.raises(ConfigError, match=r"log\.level: .*'debug', 'info'"):
        load_config(write(tmp_path, VALID + '[log]\nlevel = "loud"\n'))


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "ten", "1e999"])
def test_source_numbers_are_finite(value):
    expected = rf"option fps={value!r} must be a number >= 0 \(finite\)"
    with pytest.raises(SourceError, match=expected):
        source_from_uri(f"synthetic://shapes?fps={value}")


def test_an_empty_inline_password_is_a_config_error(tmp_path):
    """`password = ""` was taken, and the broker then answered 'not authorized' at every
    attempt."""
    with pytest.raises(ConfigError, match=r"mqtt: password is empty .*"
                                          r"password_file or \$EDGE_MQTT_PASSWORD"):
        load_config(mqtt_config(tmp_path, 'url = "mqtt://h"\nusername = "u"\npassword = ""'))


def test_cameras_reading_one_source_are_warned_about_with_its_password_hidden(tmp_path,
                                                                            caplog):
    """A user check: two cameras on one source were accepted without a word (a camera block
    copied without its source changed; each opens and decodes the stream)."""
    stream = "rtsp://admin:s3cret@10.0.0.5/stream1"
    text = VALID.replace('source = "synthetic://shapes?fps=15&seed=1"', f'source = "{stream}"')
    text = text.replace("[mqtt]", f'[[cameras]]\nname = "yard"\nsource = "{stream}"\n'
                                  '[[cameras]]\nname = "door"\nsource = "rtsp://10.0.0.6/s"\n'
                                  "[mqtt]")
    config = load_config(write(tmp_path, text))
    assert [c.name for c in config.cameras] == ["gate", "yard", "door"]  # accepted
    assert ("cameras 'gate' and 'yard' read the same source rtsp://REDACTED@10.0.0.5/stream1: "
            "each opens and decodes it on its own") in caplog.text, caplog.text
    assert "s3cret" not in caplog.text and "door" not in caplog.text
    caplog.clear()
    load_config(write(tmp_path, VALID))
    assert "the same source" not in caplog.text


def test_a_cameras_sampling_error_is_named_by_its_key_alone(tmp_path):
    """A user check: "(top level): cameras.0.sampling:" before the key's own lines."""
    text = VALID.replace('source = "synthetic://shapes?fps=15&seed=1"\n',
                         'source = "synthetic://shapes?fps=15&seed=1"\n'
                         '[cameras.sampling]\nuncertain_band = [0.4, 0.1]\n')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert "(top level)" not in str(caught.value)
    assert "\n  cameras.0.sampling:\n  uncertain_band: " in str(caught.value)


def test_a_word_a_key_does_not_take_gets_the_one_it_most_likely_meant(tmp_path):
    """A user check: `units = "normalized"` (the US spelling) got the list of words alone."""
    text = VALID.replace('source = "synthetic://shapes?fps=15&seed=1"\n',
                         'source = "synthetic://shapes?fps=15&seed=1"\n[[cameras.zones]]\n'
                         'name = "door"\npoints = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]\n'
                         'units = "normalized"\n')
    text = text.replace('path = "model.onnx"', 'path = "model.onnx"\nbackend = "TensorRT"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    said = str(caught.value)
    assert ("cameras.0.zones.0.units: Input should be 'pixels' or 'normalised'; got "
            "'normalized': did you mean 'normalised'?") in said
    assert "got 'TensorRT': did you mean 'tensorrt'?" in said
    far = VALID.replace('path = "model.onnx"', 'path = "model.onnx"\nbackend = "cuda"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, far))
    assert "got 'cuda'" in str(caught.value) and "did you mean" not in str(caught.value)
