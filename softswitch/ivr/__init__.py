"""Interactive voice response: declarative menus (``[ivr.NAME]``) and the flows they dispatch to."""

from __future__ import annotations

from .menu import (
    BUILTIN_FLOWS,
    Action,
    Flow,
    IvrContext,
    Menu,
    QueueHook,
    VoicemailHook,
    make_ivr_app,
    parse_action,
    parse_menus,
    run_menu,
)

__all__ = [
    "BUILTIN_FLOWS",
    "Action",
    "Flow",
    "IvrContext",
    "Menu",
    "QueueHook",
    "VoicemailHook",
    "make_ivr_app",
    "parse_action",
    "parse_menus",
    "run_menu",
]
