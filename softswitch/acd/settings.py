"""Queue and agent settings of the ACD (built by the config loader from ``[queues.*]`` / ``[agents.*]``)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass


class Strategy(enum.Enum):
    """How a queue picks the agent to ring."""

    LONGEST_IDLE = "longest_idle"
    ROUND_ROBIN = "round_robin"
    FEWEST_CALLS = "fewest_calls"
    LEAST_TALK_TIME = "least_talk_time"
    RING_ALL = "ring_all"
    RANDOM = "random"
    SKILLS = "skills"


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One ``[queues.NAME]`` section."""

    name: str
    skill: str  # agents with this skill (any level 1..9) are members
    strategy: Strategy = Strategy.LONGEST_IDLE
    ring_timeout_s: float = 15.0
    wrapup_s: float = 10.0
    max_wait_s: float = 300.0  # then the caller leaves with EXITWITHTIMEOUT to on_timeout
    announce_position_every_s: float = 30.0  # 0 = never (service only)
    vip_priority: bool = True  # VIP callers are placed ahead of non-VIP callers
    on_timeout: str = "hangup"  # "voicemail:BOX" | "queue:OTHER" | "callback" | "hangup" (service only)
    music: str = "moh"  # service only
    join_empty: bool = True  # nobody logged in: join anyway (True) or JoinRefused("empty") (False)
    max_misses: int = 3  # consecutive no-answers before the agent is auto-paused
    divert_wait_s: float = 0.0  # >0: refuse a new caller whose expected wait would exceed this
    divert_calls_per_agent: float = 0.0  # >0: refuse when (waiting+1)/staffed agents exceeds this
    service_level_s: float = 20.0  # report only
    default_handle_s: float = 180.0  # EWT before any call was handled
    callback_key: str = "1"  # service only
    callback_retries: int = 0  # service only: further attempts after a failed callback
    voicemail_key: str = "2"  # service only ("" disables)


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """One ``[agents.ID]`` section."""

    id: str  # "2001"
    extension: str  # SIP account the agent's phone registers as
    skills: Mapping[str, int]  # skill -> level 1..9
    name: str = ""
