"""Tests for crawler.config: defaults, the TOML/env/flag layers, validation and addresses."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path

import pytest

from crawler.config import (
    KEYS,
    SECTIONS,
    Config,
    ConfigError,
    MetricsConfig,
    OutputConfig,
    check_flags,
    load_config,
    metrics_address,
    parse_address,
    read_environment,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOML = REPO / "config" / "default.toml"
DEMO_TOML = REPO / "config" / "demo.toml"


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "settings.toml"
    path.write_text(text, encoding="utf-8")
    return path


# -- defaults and the shipped files -------------------------------------------------


def test_defaults():
    config = Config()
    assert config.crawl.max_depth == 5
    assert config.crawl.max_pages == 10000
    assert config.crawl.same_host is True
    assert config.crawl.allow_hosts == ()
    assert config.queue.listen == "127.0.0.1:5599"
    assert config.queue.lease_seconds == 60.0
    assert config.queue.authkey_file == ""
    assert config.download.connect == "127.0.0.1:5599"
    assert config.download.concurrency == 32
    assert config.download.max_image_bytes == 64 * 1024 * 1024
    assert config.output.out == "downloads"


def test_operator_limits_default_to_the_values_that_were_constants():
    queue, download = Config().queue, Config().download
    assert queue.max_connections == 256  # the harvester server's connection threads
    assert queue.handshake_timeout == 10.0
    assert queue.max_lease_wait == 2.0
    assert download.report_interval == 0.25
    assert download.shutdown_grace == 10.0


def test_operator_limits_come_from_the_environment():
    environ = {
        "CRAWLER_MAX_CONNECTIONS": "512",
        "CRAWLER_HANDSHAKE_TIMEOUT": "3",
        "CRAWLER_MAX_LEASE_WAIT": "0.5",
        "CRAWLER_REPORT_INTERVAL": "1",
        "CRAWLER_SHUTDOWN_GRACE": "30",
    }
    config = load_config(environ=environ)
    assert config.queue.max_connections == 512
    assert config.queue.handshake_timeout == 3.0
    assert config.queue.max_lease_wait == 0.5
    assert config.download.report_interval == 1.0
    assert config.download.shutdown_grace == 30.0


def test_load_config_without_file_environment_or_flags_gives_defaults():
    assert load_config(environ={}) == Config()


def test_default_toml_equals_the_code_defaults():
    assert load_config(DEFAULT_TOML, environ={}) == Config()


def test_default_toml_names_every_key_in_its_own_section():
    with DEFAULT_TOML.open("rb") as handle:
        data = tomllib.load(handle)
    in_file = {key: section for section, table in data.items() for key in table}
    assert in_file == {key: section for key, (section, _) in KEYS.items()}


def test_demo_toml_loads():
    config = load_config(DEMO_TOML, environ={})
    assert config.crawl.max_depth == 3
    assert config.queue.lease_seconds == 30.0
    assert config.download.concurrency == 16
    assert config.output.out == "downloads/demo"


@pytest.mark.parametrize(
    "entry",
    [
        "",
        "example.org concurrency=0",
        "example.org concurrency=1.5",
        "example.org delay=-1",
        "example.org delay=soon",
        "example.org speed=3",
        "example.org concurrency",
    ],
)
def test_bad_host_limits_entry_is_quoted(tmp_path: Path, entry: str):
    path = write_toml(tmp_path, f"[politeness]\nhost_limits = [{entry!r}]\n".replace("'", '"'))
    with pytest.raises(ConfigError, match="host_limits") as error:
        load_config(path, environ={})
    assert repr(entry) in str(error.value)


def test_host_limits_entries_are_kept_as_written(tmp_path: Path):
    entries = ["*.example.org concurrency=2 delay=1.5", "cdn.example.net  concurrency=32"]
    path = write_toml(tmp_path, f"[politeness]\nhost_limits = {entries!r}\n".replace("'", '"'))
    assert load_config(path, environ={}).politeness.host_limits == tuple(entries)


def test_keys_are_unique_across_sections():
    sections = SECTIONS.values()
    assert len(KEYS) == sum(len(dataclasses.fields(section)) for section in sections)


# -- precedence: flags > environment > file > defaults -------------------------------


@pytest.fixture
def depth_file(tmp_path: Path) -> Path:
    return write_toml(tmp_path, "[crawl]\nmax_depth = 3\n")


def test_file_overrides_defaults(depth_file: Path):
    config = load_config(depth_file, environ={})
    assert config.crawl.max_depth == 3
    assert config.crawl.max_pages == 10000


def test_environment_overrides_file(depth_file: Path):
    config = load_config(depth_file, environ={"CRAWLER_MAX_DEPTH": "4"})
    assert config.crawl.max_depth == 4


def test_flags_override_environment_and_file(depth_file: Path):
    config = load_config(depth_file, environ={"CRAWLER_MAX_DEPTH": "4"}, flags={"max_depth": 7})
    assert config.crawl.max_depth == 7


def test_flag_left_unset_does_not_override(depth_file: Path):
    config = load_config(depth_file, environ={"CRAWLER_MAX_DEPTH": "4"}, flags={"max_depth": None})
    assert config.crawl.max_depth == 4


def test_load_config_reads_process_environment_by_default(monkeypatch):
    monkeypatch.setenv("CRAWLER_MAX_PAGES", "12")
    assert load_config().crawl.max_pages == 12


def test_layers_merge_key_by_key(depth_file: Path):
    config = load_config(
        depth_file, environ={"CRAWLER_CONCURRENCY": "8"}, flags={"out": "elsewhere"}
    )
    assert (config.crawl.max_depth, config.download.concurrency, config.output.out) == (
        3,
        8,
        "elsewhere",
    )


# -- file errors ---------------------------------------------------------------------


def test_missing_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.toml", environ={})


def test_invalid_toml_is_a_config_error(tmp_path: Path):
    path = write_toml(tmp_path, "[crawl\nmax_depth = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_unknown_section(tmp_path: Path):
    path = write_toml(tmp_path, "[crawling]\nmax_depth = 3\n")
    with pytest.raises(ConfigError, match=r"\[crawling\]"):
        load_config(path, environ={})


def test_section_that_is_not_a_table(tmp_path: Path):
    path = write_toml(tmp_path, "crawl = 3\n")
    with pytest.raises(ConfigError, match=r"must be a \[crawl\] table"):
        load_config(path, environ={})


def test_unknown_key(tmp_path: Path):
    path = write_toml(tmp_path, "[crawl]\nmax_dept = 3\n")
    with pytest.raises(ConfigError, match=r"crawl\.max_dept"):
        load_config(path, environ={})


def test_known_key_in_the_wrong_section(tmp_path: Path):
    path = write_toml(tmp_path, "[queue]\nmax_depth = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key queue\.max_depth"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("section", "key", "toml_value"),
    [
        ("crawl", "max_depth", '"3"'),  # string for int
        ("crawl", "max_depth", "true"),  # bool for int
        ("crawl", "max_depth", "3.5"),  # float for int
        ("crawl", "max_pages", "3.0"),  # float for int, even when whole
        ("crawl", "same_host", "1"),  # int for bool
        ("crawl", "same_host", '"yes"'),  # string for bool
        ("crawl", "page_timeout", "true"),  # bool for float
        ("crawl", "page_timeout", '"15"'),  # string for float
        ("crawl", "user_agent", "5"),  # int for string
        ("crawl", "allow_hosts", '"a.example"'),  # string for list
        ("crawl", "allow_hosts", "[1, 2]"),  # list of ints for list of strings
        ("crawl", "allow_hosts", '["a.example", 2]'),  # mixed list
        ("queue", "listen", "5599"),  # int for string
        ("queue", "max_connections", "256.0"),  # float for int
        ("download", "shutdown_grace", '"10"'),  # string for float
    ],
)
def test_wrong_type_names_the_key(tmp_path: Path, section: str, key: str, toml_value: str):
    path = write_toml(tmp_path, f"[{section}]\n{key} = {toml_value}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key} .*expected"):
        load_config(path, environ={})


def test_int_is_accepted_for_a_float_and_stored_as_float(tmp_path: Path):
    path = write_toml(tmp_path, "[crawl]\npage_timeout = 7\n")
    value = load_config(path, environ={}).crawl.page_timeout
    assert value == 7.0
    assert isinstance(value, float)


def test_list_becomes_a_tuple(tmp_path: Path):
    path = write_toml(tmp_path, '[crawl]\nallow_hosts = ["a.example", "b.example:8080"]\n')
    assert load_config(path, environ={}).crawl.allow_hosts == ("a.example", "b.example:8080")


@pytest.mark.parametrize(
    ("section", "key", "toml_value"),
    [
        ("crawl", "max_depth", "-1"),
        ("crawl", "max_pages", "-5"),
        ("crawl", "page_workers", "0"),
        ("crawl", "page_timeout", "0.0"),
        ("crawl", "max_page_bytes", "0"),
        ("crawl", "max_images", "-1"),
        ("politeness", "host_concurrency", "0"),
        ("politeness", "host_delay", "-0.5"),
        ("politeness", "host_down_timeout", "-1"),
        ("crawl", "include", '["(unclosed"]'),
        ("crawl", "exclude", '["ok", "*bad"]'),
        ("crawl", "prefixes", '["example.org/docs/"]'),  # no scheme
        ("crawl", "prefixes", '["ftp://example.org/"]'),
        ("queue", "lease_seconds", "-1.5"),
        ("queue", "max_attempts", "0"),
        ("queue", "node_timeout", "0"),
        ("queue", "linger_seconds", "-0.1"),
        ("queue", "max_connections", "0"),
        ("queue", "handshake_timeout", "0"),
        ("queue", "max_lease_wait", "-1"),
        ("download", "report_interval", "0"),
        ("download", "shutdown_grace", "-2.5"),
        ("download", "processes", "-1"),
        ("download", "concurrency", "0"),
        ("download", "batch_size", "-1"),
        ("download", "connect_timeout", "0"),
        ("download", "read_timeout", "-3"),
        ("download", "max_image_bytes", "0"),
        ("download", "max_image_bytes", str(2**31)),
        ("download", "wait_for_harvester", "-1"),
        ("output", "totals_interval", "0"),
    ],
)
def test_rule_violation_names_the_key(tmp_path: Path, section: str, key: str, toml_value: str):
    path = write_toml(tmp_path, f"[{section}]\n{key} = {toml_value}\n")
    with pytest.raises(ConfigError, match=rf"{section}\.{key} .*must be"):
        load_config(path, environ={})


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("max_depth", 0),
        ("max_pages", 0),
        ("processes", 0),
        ("batch_size", 0),
        ("linger_seconds", 0),
        ("wait_for_harvester", 0),
        ("max_image_bytes", 2**31 - 1),
    ],
)
def test_boundary_values_are_accepted(key: str, value: int):
    config = load_config(environ={}, flags={key: value})
    section = getattr(config, KEYS[key][0])
    assert getattr(section, key) == value


def test_bad_address_in_file_names_the_key(tmp_path: Path):
    path = write_toml(tmp_path, '[download]\nconnect = "nowhere"\n')
    with pytest.raises(ConfigError, match="connect"):
        load_config(path, environ={})


# -- environment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("yes", True),
        (" on ", True),
        ("0", False),
        ("false", False),
        ("No", False),
        ("off", False),
    ],
)
def test_environment_booleans(text: str, expected: bool):
    assert read_environment({"CRAWLER_SAME_HOST": text}) == {"same_host": expected}


def test_environment_numbers_and_strings():
    values = read_environment(
        {
            "CRAWLER_MAX_PAGES": "250",
            "CRAWLER_PAGE_TIMEOUT": "2.5",
            "CRAWLER_LEASE_SECONDS": "9",
            "CRAWLER_USER_AGENT": "my bot (+mailto:me@example.org)",
        }
    )
    assert values == {
        "max_pages": 250,
        "page_timeout": 2.5,
        "lease_seconds": 9.0,
        "user_agent": "my bot (+mailto:me@example.org)",
    }
    assert isinstance(values["lease_seconds"], float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a.example", ("a.example",)),
        ("a.example, b.example:8080", ("a.example", "b.example:8080")),
        (" a.example ,, b.example, ", ("a.example", "b.example")),
        ("", ()),
    ],
)
def test_environment_comma_lists(text: str, expected: tuple[str, ...]):
    assert read_environment({"CRAWLER_ALLOW_HOSTS": text}) == {"allow_hosts": expected}


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("CRAWLER_SAME_HOST", "maybe"),
        ("CRAWLER_SAME_HOST", ""),
        ("CRAWLER_MAX_DEPTH", "three"),
        ("CRAWLER_MAX_DEPTH", "1.5"),
        ("CRAWLER_MAX_DEPTH", ""),
        ("CRAWLER_PAGE_TIMEOUT", "fast"),
        ("CRAWLER_PAGE_TIMEOUT", "nan"),
        ("CRAWLER_MAX_DEPTH", "-1"),
        ("CRAWLER_CONCURRENCY", "0"),
        ("CRAWLER_MAX_IMAGE_BYTES", str(2**31)),
    ],
)
def test_bad_environment_value_names_the_variable(name: str, text: str):
    with pytest.raises(ConfigError, match=name):
        read_environment({name: text})


def test_bad_environment_value_fails_load_config():
    with pytest.raises(ConfigError, match="CRAWLER_MAX_DEPTH"):
        load_config(environ={"CRAWLER_MAX_DEPTH": "deep"})


def test_authkey_and_node_id_are_not_settings():
    environ = {"CRAWLER_AUTHKEY": "secret-secret-secret", "CRAWLER_NODE_ID": "node-7"}
    assert read_environment(environ) == {}
    assert load_config(environ=environ) == Config()


def test_variables_without_the_prefix_are_ignored():
    assert read_environment({"PATH": "/bin", "MAX_DEPTH": "x", "crawler_max_depth": "x"}) == {}


def test_unknown_crawler_variable_is_an_error():
    with pytest.raises(ConfigError, match="CRAWLER_FOO"):
        load_config(environ={"CRAWLER_FOO": "1"})


# -- flags ---------------------------------------------------------------------------


def test_flags_are_checked_and_named_as_flags():
    with pytest.raises(ConfigError, match="--max-depth"):
        check_flags({"max_depth": -2})


def test_flag_of_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="--concurrency"):
        check_flags({"concurrency": "8"})


def test_flags_int_for_float_is_stored_as_float():
    assert check_flags({"page_timeout": 3, "max_pages": None}) == {"page_timeout": 3.0}


# -- addresses -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5599", ("127.0.0.1", 5599)),
        ("harvester.example:80", ("harvester.example", 80)),
        ("localhost:1", ("localhost", 1)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("[::1]:5599", ("::1", 5599)),
        ("[2001:db8::7]:8000", ("2001:db8::7", 8000)),
    ],
)
def test_parse_address_good(text: str, expected: tuple[str, int]):
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5599",
        "localhost",
        "localhost:",
        ":5599",
        "localhost:0",
        "localhost:65536",
        "localhost:-1",
        "localhost:http",
        "localhost:55 99",
        "[]:5599",
        "[::1]",
        "::1:5599",  # IPv6 without brackets is ambiguous
        "[::1:5599",  # unbalanced bracket
        "localhost]:5599",
        "localhost:\u00b2",  # a digit to str.isdigit, not to int()
        "[[::1]]:5599",
    ],
)
def test_parse_address_bad(text: str):
    with pytest.raises(ConfigError, match="listen"):
        parse_address(text, "listen")


def test_ipv6_listen_address_in_config_is_accepted():
    config = load_config(environ={"CRAWLER_LISTEN": "[::1]:6000"})
    assert config.queue.listen == "[::1]:6000"


# -- derived paths -------------------------------------------------------------------


def test_output_paths_default_inside_out():
    output = OutputConfig(out="results")
    assert output.out_dir == Path("results")
    assert output.state_dir == Path("results") / ".state"
    assert output.log_path == Path("results") / "progress.log"


def test_output_paths_given_explicitly():
    output = OutputConfig(out="results", state="/var/lib/crawl", log="/var/log/crawl.log")
    assert output.state_dir == Path("/var/lib/crawl")
    assert output.log_path == Path("/var/log/crawl.log")


def test_out_flag_moves_the_derived_paths():
    config = load_config(environ={}, flags={"out": "run2"})
    assert config.output.state_dir == Path("run2") / ".state"
    assert config.output.log_path == Path("run2") / "progress.log"


# -- values sent as HTTP headers or written to the log ------------------------------------

INJECTED_USER_AGENTS = [
    "bot/1.0\r\nX-Injected: 1",
    "bot/1.0\nX-Injected: 1",
    "bot/1.0\r",
    "bot/1.0\tcontact",
    "bot/1.0\x00",
    "bot/1.0\x1b[31m",
    "bot/1.0\x7f",
    "bot/1.0\x85",  # NEL, a C1 control
    "bot/1.0 \u2028 x",  # line separator
    "bot/1.0 \u20ac",  # not latin-1: http.client could not send it
    " bot/1.0",  # requests refuses leading whitespace
    "bot/1.0 ",
]


@pytest.mark.parametrize("value", INJECTED_USER_AGENTS)
def test_user_agent_with_a_control_character_is_refused_from_a_file(tmp_path: Path, value: str):
    path = write_toml(tmp_path, f"[crawl]\nuser_agent = {json.dumps(value)}\n")
    with pytest.raises(ConfigError, match=r"crawl\.user_agent .*User-Agent header") as caught:
        load_config(path, environ={})
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", INJECTED_USER_AGENTS)
def test_user_agent_with_a_control_character_is_refused_from_environment_and_flags(value: str):
    with pytest.raises(ConfigError, match=r"^CRAWLER_USER_AGENT \(from environment\)"):
        load_config(environ={"CRAWLER_USER_AGENT": value})
    with pytest.raises(ConfigError, match=r"^--user-agent \(from command line\)"):
        check_flags({"user_agent": value})


@pytest.mark.parametrize(
    "value",
    [
        Config().crawl.user_agent,
        "Mozilla/5.0 (compatible; my-bot/2.1; +https://example.org/bot; bot@example.org)",
        "a",
        "",
    ],
)
def test_ordinary_user_agents_are_accepted(value: str):
    assert load_config(environ={"CRAWLER_USER_AGENT": value}).crawl.user_agent == value


@pytest.mark.parametrize("host", ["exa\nmple", "exa\rmple", "exa mple", "exa\x1bmple", "\t"])
def test_address_with_a_control_character_or_space_is_refused(host: str):
    with pytest.raises(ConfigError, match="listen: expected HOST:PORT") as caught:
        load_config(environ={"CRAWLER_LISTEN": f"{host}:5599"})
    assert "\n" not in str(caught.value) and "\r" not in str(caught.value)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("9100", ("127.0.0.1", 9100)),
        ("127.0.0.1:9100", ("127.0.0.1", 9100)),
        ("0.0.0.0:9100", ("0.0.0.0", 9100)),
        ("[::1]:9100", ("::1", 9100)),
    ],
)
def test_metrics_listen_on_loopback_unless_told_otherwise(text: str, address: tuple):
    assert metrics_address(text) == address
    assert load_config(environ={}, flags={"metrics": text}).metrics.metrics == text


@pytest.mark.parametrize("text", ["nine", "127.0.0.1", "127.0.0.1:0", "host:99999", ":9100"])
def test_a_bad_metrics_address_is_refused_by_name(text: str):
    with pytest.raises(ConfigError, match="metrics"):
        load_config(environ={}, flags={"metrics": text})
    with pytest.raises(ConfigError, match="CRAWLER_METRICS"):
        load_config(environ={"CRAWLER_METRICS": text})


def test_metrics_are_off_by_default():
    assert load_config(environ={}).metrics == MetricsConfig(metrics="")


@pytest.mark.parametrize(
    "toml",
    [
        'headers = "*.example.org Authorization: Bearer SECRET1"',  # not a list
        'headers = ["*.example.org Authorization Bearer SECRET1"]',  # no colon
        'headers = ["*.example.org Bad Name: SECRET1"]',
        'headers = ["*.example.org Authorization: SECRET1\\u0007"]',
    ],
)
def test_a_bad_header_rule_is_refused_without_showing_its_value(tmp_path, toml):
    path = write_toml(tmp_path, f"[crawl]\n{toml}\n")
    with pytest.raises(ConfigError, match="headers") as caught:
        load_config(path, environ={})
    assert "SECRET1" not in str(caught.value)


def test_header_rules_and_cookies_come_from_the_file_and_the_environment(tmp_path):
    path = write_toml(tmp_path, '[crawl]\nheaders = ["a.test X-Key: K1"]\ncookies = "c.txt"\n')
    assert load_config(path, environ={}).crawl.headers == ("a.test X-Key: K1",)
    crawl = load_config(environ={"CRAWLER_HEADERS": "a.test X-A: 1,b.test X-B: 2"}).crawl
    assert crawl.headers == ("a.test X-A: 1", "b.test X-B: 2")
    assert load_config(path, environ={}, flags={"cookies": "d.txt"}).crawl.cookies == "d.txt"
