"""Config loading: every problem names file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.cli import main
from softswitch.config import ConfigError, load_config


def write(tmp_path: Path, text: str, name: str = "switch.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_demo_config_is_valid() -> None:
    demo = Path(__file__).parent.parent / "softswitch" / "demo" / "switch.toml"
    cfg = load_config(demo)
    assert {"1000", "1001", "2001", "2002", "2003"} <= set(cfg.accounts)
    assert cfg.domain == "hotline.example"


def test_full_example_from_the_contract_loads(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "switch.pem").write_text("x")
    (tmp_path / "certs" / "switch.key").write_text("x")
    write(tmp_path, "user,password,name\n3001,pw,Ann\n3002,pw2\n", "accounts.csv")
    cfg = load_config(
        write(
            tmp_path,
            """
[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060", "tls://127.0.0.1:5061", "udp://[::1]:5060"]
tls_cert = "certs/switch.pem"
tls_key = "certs/switch.key"
rtp_ports = [20000, 39999]
data_dir = "var"
language = "zh"
max_calls = 4000
accounts_file = "accounts.csv"
[accounts.1000]
password = "change-me"
name = "Reception"
[accounts.1001]
ha1 = "0123456789abcdef0123456789ABCDEF"
[[routes]]
match = "95565"
to = "ivr:hotline"
[[routes]]
match = "^[0-9]{4,6}$"
to = "extension"
[recording]
enabled = true
[ivr.hotline]
prompt = "welcome_main"
timeout_s = 5
retries = 3
[ivr.hotline.keys]
"1" = "flow:quote"
"9" = "menu:hotline"
"0" = "queue:a_shares"
[queues.a_shares]
strategy = "longest_idle"
skill = "a_shares"
ring_timeout_s = 15
wrapup_s = 10
max_wait_s = 300
announce_position_every_s = 30
vip_priority = true
on_timeout = "voicemail:a_shares"
music = "moh"
[agents.2001]
extension = "2001"
skills = { a_shares = 5, hk_stocks = 2 }
[accounts.2001]
password = "pw2001"
""",
        )
    )
    assert [str(lst) for lst in cfg.listen][-1] == "udp://[::1]:5060"
    assert set(cfg.accounts) == {"1000", "1001", "2001", "3001", "3002"}
    assert cfg.queues["a_shares"].on_timeout == "voicemail:a_shares"
    assert dict(cfg.agents["2001"].skills) == {"a_shares": 5, "hk_stocks": 2}
    assert cfg.accounts["3001"].name == "Ann"
    assert cfg.accounts["1001"].credentials.ha1_md5 == "0123456789abcdef0123456789abcdef"
    assert cfg.routes[0].matches("95565") and not cfg.routes[0].matches("955650")
    assert cfg.routes[1].matches("2001") and not cfg.routes[1].matches("12")
    assert cfg.data_dir == tmp_path / "var"


def test_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060", "sctp://127.0.0.1:5060"]
language = "fr"
max_calls = "many"
colour = "blue"

[[routes]]
match = "1"
to = "extension"
[[routes]]
match = "^[0-9"
to = "extension"
[[routes]]
match = "2"
to = "pbx:main"

[accounts.1000]
password = "a"
ha1 = "b"
""",
    )
    got = problems(path)
    expected = [
        f"{path}:3: switch.listen[1]: unknown scheme 'sctp'",
        f"{path}:4: switch.language: unknown language 'fr'",
        f"{path}:5: switch.max_calls: expected an integer",
        f"{path}:6: switch.colour: unknown key",
        f"{path}:12: routes[1].match: bad regex",
        f"{path}:16: routes[2].to: unknown target 'pbx:main'",
        f"{path}:18: accounts.1000: set exactly one of password or ha1",
    ]
    for want in expected:
        assert any(p.startswith(want) for p in got), (want, got)
    assert len(got) == len(expected), got


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[switch]\ndomain = "x"\nlisten = [\n')
    (problem,) = problems(path)
    assert problem.startswith(f"{path}:")
    assert "TOML syntax error" in problem


def test_accounts_csv_errors_name_the_csv_line(tmp_path: Path) -> None:
    csv = write(tmp_path, "user,password\n1001,pw\n1001,again\nbad user,pw\n", "accounts.csv")
    got = problems(write(tmp_path, '[switch]\naccounts_file = "accounts.csv"\n'))
    assert f"{csv}:3: user: duplicate account '1001'" in got
    assert any(p.startswith(f"{csv}:4: user: invalid user name") for p in got)


def test_missing_accounts_file_and_tls_without_cert(tmp_path: Path) -> None:
    got = problems(
        write(tmp_path, '[switch]\nlisten = ["tls://127.0.0.1:5061"]\naccounts_file = "nope.csv"\n')
    )
    assert any("switch.accounts_file: cannot read accounts file" in p for p in got)
    assert any("a tls:// listener needs switch.tls_cert and switch.tls_key" in p for p in got)


def test_registrar_limits_are_checked(tmp_path: Path) -> None:
    got = problems(
        write(tmp_path, "[registrar]\nmin_expires = 600\ndefault_expires = 60\nauth_algorithms = ['MD4']\n")
    )
    assert any("registrar: expected min_expires <= default_expires <= max_expires" in p for p in got)
    assert any("registrar.auth_algorithms" in p and ":4:" in p for p in got)


def test_cli_check_exits_1_with_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[switch]\nlanguage = "fr"\nmax_calls = 0\n')
    with pytest.raises(SystemExit) as info:
        main(["check", "-c", str(path)])
    assert info.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"error: {path}:2: switch.language: unknown language 'fr'; expected one of: zh, en",
        f"error: {path}:3: switch.max_calls: expected a positive integer, got 0",
    ]


def test_cli_check_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, '[switch]\ndomain = "a.example"\n[accounts.1]\npassword = "p"\n')
    assert main(["check", "-c", str(path)]) == 0
    assert "ok (1 accounts" in capsys.readouterr().out


def test_unknown_section_is_an_error(tmp_path: Path) -> None:
    got = problems(write(tmp_path, "[swtich]\ndomain = 'x'\n"))
    assert got[0].startswith(f"{tmp_path / 'switch.toml'}:1: swtich: unknown section")


def test_ivr_references_are_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """[[routes]]
match = "95565"
to = "ivr:hotline"
[[routes]]
match = "95566"
to = "ivr:nosuch"
[ivr.hotline]
prompt = "no_such_prompt"
[ivr.hotline.keys]
"1" = "flow:teleport"
"2" = "menu:missing"
"0" = "queue:nowhere"
""",
    )
    got = problems(path)
    for want in (
        ":6: routes[1].to: unknown menu 'nosuch'",
        ":8: ivr.hotline.prompt: unknown prompt",
        ":10: ivr.hotline.keys.1: unknown flow 'teleport'",
        ":11: ivr.hotline.keys.2: unknown menu 'missing'",
        ":12: ivr.hotline.keys.0: unknown queue 'nowhere'",
    ):
        assert any(want in p for p in got), (want, got)


def test_trading_settings_are_checked(tmp_path: Path) -> None:
    got = problems(write(tmp_path, '[trading]\nbackend = "carrier-pigeon"\n'))
    assert any("trading.backend" in p and "carrier-pigeon" in p for p in got), got
