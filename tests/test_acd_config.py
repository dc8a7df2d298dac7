"""[queues.*], [agents.*] and [acd]: parsed into settings; every mistake named by file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from softswitch.acd.settings import Strategy
from softswitch.config import ConfigError, load_config

BASE = """
[switch]
domain = "hotline.example"
listen = ["udp://127.0.0.1:5060"]
data_dir = "var"
[accounts.2001]
password = "pw"
[accounts.2002]
password = "pw"
[[routes]]
match = "800"
to = "queue:sales"
"""


def load(tmp_path: Path, extra: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "switch.toml"
    path.write_text(BASE + extra)
    return load_config(path)


def problems(tmp_path: Path, extra: str) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, extra)
    return e.value.problems


def test_queues_agents_and_feature_codes_are_parsed(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
[acd]
feature_codes = { login = "*80" }
pause_reasons = { "1" = "lunch" }
[queues.sales]
skill = "sales"
strategy = "skills"
ring_timeout_s = 12
join_empty = false
callback_retries = 2
on_timeout = "queue:overflow"
[queues.overflow]
skill = "sales"
[agents.2001]
extension = "2001"
skills = { sales = 7 }
""",
    )
    q = cfg.queues["sales"]
    assert (q.strategy, q.ring_timeout_s, q.join_empty, q.callback_retries) == (
        Strategy.SKILLS,
        12.0,
        False,
        2,
    )
    assert cfg.queues["overflow"].strategy is Strategy.LONGEST_IDLE  # defaults
    assert cfg.agents["2001"].skills == {"sales": 7}
    assert cfg.acd.control_socket == cfg.data_dir / "control.sock"
    assert cfg.acd.feature("*80") == ("login", "")
    assert cfg.acd.feature("*721") == ("pause", "lunch") and cfg.acd.feature("*729") == ("pause", "9")
    assert cfg.acd.feature("*70") is None  # replaced by *80
    route = cfg.route("*73")
    assert route is not None and route.to == "feature:agent"  # before the dial plan
    assert cfg.route("800") is not None and cfg.route("800").to == "queue:sales"  # type: ignore[union-attr]


def test_every_mistake_is_named_with_line_and_key(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[queues.sales]
skill = "sales"
strategy = "fastest"
ring_timeout_s = -1
on_timeout = "voicemail"
music = "no_such_prompt"
callback_key = "12"
[queues.other]
strategy = "random"
[agents.2001]
extension = "2009"
skills = { sales = 12 }
[agents.2002]
extension = "2002"
skills = { sales = 1 }
colour = "red"
[acd]
feature_codes = { dance = "*99", login = "70a" }
""",
    )
    text = "\n".join(found)
    assert (
        "switch.toml:16: queues.sales.strategy: unknown strategy 'fastest'; expected one of: longest_idle"
        in text
    )
    assert "queues.sales.ring_timeout_s: -1 out of range" in text
    assert "queues.sales.on_timeout: unknown target 'voicemail'" in text
    assert "queues.sales.music: unknown prompt 'no_such_prompt'" in text
    assert "queues.sales.callback_key: expected one key" in text
    assert "queues.other: missing key skill" in text
    assert "agents.2001.extension: no SIP account '2009'" in text
    assert "agents.2001.skills: skill 'sales': expected a level 1 to 9, got 12" in text
    assert "agents.2002.colour: unknown key" in text
    assert "acd.feature_codes.dance: unknown feature" in text
    assert "acd.feature_codes.login: expected a code of digits" in text
    assert all(p.startswith(str(tmp_path / "switch.toml")) for p in found)
    assert not any("routes[0]" in p for p in found)  # the queue exists, if broken: no echo error


def test_routes_to_unknown_queues_and_queue_loops_are_errors(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[queues.support]
skill = "sales"
on_timeout = "queue:support"
""",
    )
    text = "\n".join(found)
    assert "routes[0].to: unknown queue 'sales'; define [queues.sales]" in text
    assert "queues.support.on_timeout: a queue cannot time out into itself" in text


def test_two_agents_cannot_share_an_extension(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        """
[queues.sales]
skill = "sales"
[agents.a]
extension = "2001"
skills = { sales = 1 }
[agents.b]
extension = "2001"
skills = { sales = 1 }
""",
    )
    assert any("agents.b.extension: extension 2001 is already agent a's" in p for p in found)
