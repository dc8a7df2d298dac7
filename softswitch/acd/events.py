"""Events of the ACD core (frozen slots dataclasses) and the agent states."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class AgentState(enum.Enum):
    LOGGED_OUT = "logged_out"
    AVAILABLE = "available"
    RINGING = "ringing"
    ON_CALL = "on_call"
    WRAP_UP = "wrap_up"
    PAUSED = "paused"


# -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Joined:
    call_id: str
    queue: str
    position: int
    expected_wait: float | None


@dataclass(frozen=True, slots=True)
class JoinRefused:
    call_id: str
    queue: str
    reason: str  # "empty" | "wait" | "ratio"


@dataclass(frozen=True, slots=True)
class RingAgents:
    call_id: str
    queue: str
    agents: tuple[str, ...]
    extensions: tuple[str, ...]
    timeout_s: float
    callback: bool = False


@dataclass(frozen=True, slots=True)
class CancelRing:
    call_id: str
    agent_id: str
    extension: str


@dataclass(frozen=True, slots=True)
class CallTimedOut:
    call_id: str
    queue: str
    target: str


@dataclass(frozen=True, slots=True)
class AgentStateChanged:
    agent_id: str
    old: AgentState
    new: AgentState
    at: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class QueueLogEntry:
    time: float
    call_id: str
    queue: str
    agent: str
    event: str
    data: tuple[str, ...]


Event = Joined | JoinRefused | RingAgents | CancelRing | CallTimedOut | AgentStateChanged | QueueLogEntry
