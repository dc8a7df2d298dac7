"""The ACD's part of the config file: ``[queues.NAME]``, ``[agents.ID]`` and ``[acd]``.

``[acd]`` holds what is not per queue or agent::

    [acd]
    feature_codes = { login = "*70", logout = "*71", pause = "*72", unpause = "*73" }
    control_socket = "control.sock"      # under data_dir unless absolute
    pause_reasons = { "1" = "lunch", "2" = "training" }   # *72 then a code: *721 = lunch

Errors go through the config checker, so they name file, line and key like every other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .settings import AgentSettings, QueueSettings, Strategy

if TYPE_CHECKING:
    from ..config import Config, _Checker

FEATURES = ("login", "logout", "pause", "unpause")
DEFAULT_FEATURE_CODES = {"login": "*70", "logout": "*71", "pause": "*72", "unpause": "*73"}
ON_TIMEOUT_HELP = "expected voicemail:<box>, queue:<name>, callback or hangup"

_NUMBER_KEYS = {
    "ring_timeout_s": (1.0, 600.0),
    "wrapup_s": (0.0, 3600.0),
    "max_wait_s": (1.0, 86400.0),
    "announce_position_every_s": (0.0, 3600.0),
    "divert_wait_s": (0.0, 86400.0),
    "divert_calls_per_agent": (0.0, 10000.0),
    "service_level_s": (1.0, 3600.0),
    "default_handle_s": (1.0, 86400.0),
}
_BOOL_KEYS = ("vip_priority", "join_empty")
_QUEUE_KEYS = (
    "strategy", "skill", "on_timeout", "music", "max_misses", "callback_key", "voicemail_key", "callback_retries",
    *_NUMBER_KEYS, *_BOOL_KEYS,
)  # fmt: skip


@dataclass(slots=True)
class AcdSettings:
    feature_codes: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FEATURE_CODES))
    control_socket: Path = Path("control.sock")
    pause_reasons: dict[str, str] = field(default_factory=dict)

    def feature(self, number: str) -> tuple[str, str] | None:
        """The feature a dialled number asks for and its argument (a pause reason), or None."""
        for action, code in self.feature_codes.items():
            if number == code:
                return action, ""
        pause = self.feature_codes.get("pause")
        if pause and number.startswith(pause) and number[len(pause) :].isdigit():
            code = number[len(pause) :]
            return "pause", self.pause_reasons.get(code, code)
        return None


def load_acd(chk: _Checker, raw: dict[str, Any], cfg: Config) -> None:
    """Fill ``cfg.queues``, ``cfg.agents`` and ``cfg.acd``; problems go to ``chk``."""
    from ..config import _check_type

    acd = raw.get("acd", {})
    if _check_type(chk, "acd", acd, dict, "a table [acd]"):
        _load_acd_table(chk, acd, cfg)
    queues = raw.get("queues", {})
    if _check_type(chk, "queues", queues, dict, "tables [queues.NAME]"):
        for name, table in queues.items():
            if _check_type(chk, f"queues.{name}", table, dict, f"a table [queues.{name}]"):
                q = _load_queue(chk, name, table)
                if q is not None:
                    cfg.queues[name] = q
        for name, q in cfg.queues.items():
            kind, _, arg = q.on_timeout.partition(":")
            if kind == "queue" and (arg not in cfg.queues or arg == name):
                chk.error(f"queues.{name}.on_timeout", f"unknown queue {arg!r}" if arg != name else
                          "a queue cannot time out into itself")  # fmt: skip
    agents = raw.get("agents", {})
    if _check_type(chk, "agents", agents, dict, "tables [agents.ID]"):
        extensions: dict[str, str] = {}
        for agent_id, table in agents.items():
            key = f"agents.{agent_id}"
            if not _check_type(chk, key, table, dict, f"a table [agents.{agent_id}]"):
                continue
            agent = _load_agent(chk, str(agent_id), table, cfg)
            if agent is None:
                continue
            if agent.extension in extensions:
                chk.error(f"{key}.extension", f"extension {agent.extension} is already agent "
                          f"{extensions[agent.extension]}'s")  # fmt: skip
                continue
            extensions[agent.extension] = agent.id
            cfg.agents[agent.id] = agent
    if not cfg.acd.control_socket.is_absolute():
        cfg.acd.control_socket = cfg.data_dir / cfg.acd.control_socket
    for i, r in enumerate(cfg.routes):
        if r.to.startswith("queue:") and r.to[6:] not in (queues if isinstance(queues, dict) else {}):
            chk.error(f"routes[{i}].to", f"unknown queue {r.to[6:]!r}; define [queues.{r.to[6:]}]")


def _load_acd_table(chk: _Checker, acd: dict[str, Any], cfg: Config) -> None:
    from ..config import _check_type

    for k, v in acd.items():
        key = f"acd.{k}"
        if k == "feature_codes":
            if not _check_type(chk, key, v, dict, "a table of feature = code"):
                continue
            for action, code in v.items():
                if action not in FEATURES:
                    chk.error(f"{key}.{action}", f"unknown feature; expected one of: {', '.join(FEATURES)}")
                elif not isinstance(code, str) or not code or not all(c in "0123456789*#" for c in code):
                    chk.error(f"{key}.{action}", f"expected a code of digits, * and #, got {code!r}")
                else:
                    cfg.acd.feature_codes[action] = code
        elif k == "control_socket":
            if _check_type(chk, key, v, str, "a path"):
                cfg.acd.control_socket = Path(v)
        elif k == "pause_reasons":
            if _check_type(chk, key, v, dict, "a table of code = reason"):
                for code, reason in v.items():
                    if not code.isdigit() or not isinstance(reason, str):
                        chk.error(f"{key}.{code}", 'expected "digits" = "reason"')
                    else:
                        cfg.acd.pause_reasons[code] = reason
        else:
            chk.error(key, "unknown key; expected feature_codes, control_socket, pause_reasons")


def _load_queue(chk: _Checker, name: str, t: dict[str, Any]) -> QueueSettings | None:
    from ..config import _check_type, prompt_names

    key = f"queues.{name}"
    values: dict[str, Any] = {"name": name}
    ok = True
    for k, v in t.items():
        kk = f"{key}.{k}"
        if k not in _QUEUE_KEYS:
            chk.error(kk, f"unknown key; expected one of: {', '.join(_QUEUE_KEYS)}")
            ok = False
        elif k == "strategy":
            try:
                values[k] = Strategy(v)
            except ValueError:
                chk.error(
                    kk, f"unknown strategy {v!r}; expected one of: {', '.join(s.value for s in Strategy)}"
                )
                ok = False
        elif k in _NUMBER_KEYS:
            lo, hi = _NUMBER_KEYS[k]
            if not _check_type(chk, kk, v, (int, float), "a number"):
                ok = False
            elif not lo <= v <= hi:
                chk.error(kk, f"{v} out of range; expected {lo:g} to {hi:g}")
                ok = False
            else:
                values[k] = float(v)
        elif k in _BOOL_KEYS:
            if _check_type(chk, kk, v, bool, "true or false"):
                values[k] = v
            else:
                ok = False
        elif k in ("max_misses", "callback_retries"):
            lo, hi = (1, 100) if k == "max_misses" else (0, 10)
            if _check_type(chk, kk, v, int, "a whole number") and lo <= v <= hi:
                values[k] = v
            else:
                if isinstance(v, int) and not isinstance(v, bool):
                    chk.error(kk, f"{v} out of range; expected {lo} to {hi}")
                ok = False
        elif k in ("callback_key", "voicemail_key"):
            if not isinstance(v, str) or len(v) > 1 or (v and v not in "0123456789*#"):
                chk.error(kk, f'expected one key (0-9, * or #) or "" for none, got {v!r}')
                ok = False
            else:
                values[k] = v
        elif k == "on_timeout":
            kind, _, arg = v.partition(":") if isinstance(v, str) else ("", "", "")
            if not (v in ("callback", "hangup") or (kind in ("voicemail", "queue") and arg)):
                chk.error(kk, f"unknown target {v!r}; {ON_TIMEOUT_HELP}")
                ok = False
            else:
                values[k] = v
        elif k == "music":
            names = prompt_names()
            if not isinstance(v, str):
                chk.error(kk, f"expected a prompt name, got {v!r}")
                ok = False
            elif names is not None and v not in names:
                chk.error(kk, f"unknown prompt {v!r}")
                ok = False
            else:
                values[k] = v
        elif k == "skill":
            if _check_type(chk, kk, v, str, "a skill name") and v:
                values[k] = v
            else:
                ok = False
    if "skill" not in t:
        chk.error(key, "missing key skill (the agents' skill this queue needs)")
        ok = False
    keys = [values.get("callback_key", "1"), values.get("voicemail_key", "2")]
    if ok and keys[0] and keys[0] == keys[1]:
        chk.error(f"{key}.voicemail_key", f"the same key as callback_key ({keys[0]})")
        ok = False
    return QueueSettings(**values) if ok else None


def _load_agent(chk: _Checker, agent_id: str, t: dict[str, Any], cfg: Config) -> AgentSettings | None:
    key = f"agents.{agent_id}"
    ok = True
    for k in t:
        if k not in ("extension", "skills", "name"):
            chk.error(f"{key}.{k}", "unknown key; expected extension, skills, name")
            ok = False
    extension = t.get("extension", agent_id)
    if not isinstance(extension, str) or not extension:
        chk.error(f"{key}.extension", f"expected the agent phone's SIP account, got {extension!r}")
        return None
    if extension not in cfg.accounts:
        chk.error(f"{key}.extension", f"no SIP account {extension!r}; define [accounts.{extension}]")
        ok = False
    skills = t.get("skills", {})
    levels: dict[str, int] = {}
    if not isinstance(skills, dict) or not skills:
        chk.error(f"{key}.skills", "expected a table of skill = level (1-9), e.g. { a_shares = 5 }")
        ok = False
    else:
        for skill, level in skills.items():
            if isinstance(level, bool) or not isinstance(level, int) or not 1 <= level <= 9:
                chk.error(f"{key}.skills", f"skill {skill!r}: expected a level 1 to 9, got {level!r}")
                ok = False
            else:
                levels[skill] = level
    name = t.get("name", "")
    if not isinstance(name, str):
        chk.error(f"{key}.name", f"expected a string, got {name!r}")
        ok = False
    return AgentSettings(id=agent_id, extension=extension, skills=levels, name=name) if ok else None
