"""Automatic call distribution: queues, agents, routing strategies, callbacks and the queue log.

The sans-I/O core is :class:`Acd` (``core``); ``service`` runs it on the event loop.
"""

from .core import (
    Acd,
    AgentState,
    AgentStateChanged,
    CallTimedOut,
    CancelRing,
    Event,
    Joined,
    JoinRefused,
    QueueLogEntry,
    RingAgents,
)
from .settings import AgentSettings, QueueSettings, Strategy

__all__ = [
    "Acd",
    "AgentSettings",
    "AgentState",
    "AgentStateChanged",
    "CallTimedOut",
    "CancelRing",
    "Event",
    "JoinRefused",
    "Joined",
    "QueueLogEntry",
    "QueueSettings",
    "RingAgents",
    "Strategy",
]
