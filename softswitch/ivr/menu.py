"""Declarative IVR menus from ``[ivr.NAME]`` config tables, and the application that runs them.

A menu plays its prompt (barge-in allowed), collects one digit within ``timeout_s`` and runs the
action bound to that key::

    [ivr.hotline]
    prompt = ["welcome", "main_menu"]   # one prompt name or a list, played back to back
    timeout_s = 5
    retries = 3                         # failures (invalid key or no input) before the fallback
    fallback = "queue:a_shares"         # default "hangup" (goodbye, then hang up)
    [ivr.hotline.keys]
    "1" = "flow:quote"
    "8" = "lang:en"
    "0" = "queue:a_shares"

Actions: ``menu:NAME``, ``flow:NAME`` (login, quote, balance, positions, order, cancel),
``queue:NAME``, ``voicemail:BOX``, ``transfer:NUMBER``, ``hangup``, ``lang:zh`` / ``lang:en``
(switch the call's language and replay the menu). An invalid key plays ``invalid_entry``, no
input plays ``no_input``; both replay the menu until ``retries`` failures, then the fallback runs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..calls import App, CallSession

log = logging.getLogger("softswitch.ivr")

BUILTIN_FLOWS = ("login", "quote", "balance", "positions", "order", "cancel")
LANGUAGES = ("zh", "en")
DTMF_KEYS = frozenset("0123456789*#ABCD")
MENU_KEYS = frozenset({"prompt", "timeout_s", "retries", "fallback", "keys"})
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 3
# prompts the menu machinery itself plays
SYSTEM_PROMPTS = ("invalid_entry", "no_input", "goodbye", "system_busy", "queue_please_hold")

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_NUMBER = re.compile(r"^[A-Za-z0-9_.+*#-]+$")

Flow = Callable[["CallSession", "IvrContext"], Awaitable[None]]
QueueHook = Callable[["CallSession", str], Awaitable[None]]
VoicemailHook = Callable[["CallSession", str], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Action:
    """What a key does: ``kind`` is menu, flow, queue, voicemail, transfer, lang or hangup."""

    kind: str
    arg: str = ""

    def __str__(self) -> str:
        return f"{self.kind}:{self.arg}" if self.arg else self.kind


ACTION_KINDS = ("menu", "flow", "queue", "voicemail", "transfer", "lang")
HANGUP = Action("hangup")


def parse_action(text: str) -> Action:
    """``"flow:quote"`` -> Action("flow", "quote"); raises ValueError with an admin-readable reason."""
    if text == "hangup":
        return HANGUP
    kind, sep, arg = text.partition(":")
    if not sep or kind not in ACTION_KINDS:
        raise ValueError(
            f"unknown action {text!r}; expected menu:<name>, flow:<name>, queue:<name>, "
            "voicemail:<box>, transfer:<number>, lang:zh|en or hangup"
        )
    pattern = _NUMBER if kind == "transfer" else _NAME
    if not pattern.match(arg):
        raise ValueError(f"bad {kind} name {arg!r} in {text!r}")
    if kind == "lang" and arg not in LANGUAGES:
        raise ValueError(f"unknown language {arg!r}; expected one of: {', '.join(LANGUAGES)}")
    return Action(kind, arg)


@dataclass(frozen=True, slots=True)
class Menu:
    name: str
    prompts: tuple[str, ...]
    keys: Mapping[str, Action]
    timeout_s: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    fallback: Action = HANGUP


@dataclass(slots=True)
class IvrContext:
    """Per-call IVR state handed to flows.

    ``played`` is the prompt sequence of the call (names; ``<pcm>`` for raw audio); flows should
    play through :meth:`play` so it stays complete. ``data`` is free-form state shared between
    flows (e.g. the logged-in account). A flow sets ``finished`` to end the IVR after it returns,
    or ``goto`` to continue in another menu instead of the one it was started from.
    """

    session: CallSession
    menus: Mapping[str, Menu]
    played: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    menu: str = ""
    finished: bool = False
    goto: str | None = None

    async def play(self, prompts: Sequence[Any], *, barge_in: bool = True) -> bool:
        self.played.extend(p if isinstance(p, str) else "<pcm>" for p in prompts)
        return await self.session.play(prompts, barge_in=barge_in)


async def _default_on_queue(session: CallSession, name: str) -> None:
    await session.play(["queue_please_hold"], barge_in=False)
    session.hangup()


async def _ask(ctx: IvrContext, menu: Menu) -> Action:
    """Play the menu until a bound key is pressed or ``retries`` failures; returns the action."""
    session = ctx.session
    failures = 0
    while True:
        await ctx.play(menu.prompts)
        digit = await session.collect(1, terminator="", first_timeout=menu.timeout_s)
        action = menu.keys.get(digit) if digit else None
        if action is not None:
            return action
        failures += 1
        log.debug("ivr %s: menu %s: %s (%d)", session.call_id, menu.name, digit or "no input", failures)
        await ctx.play(["invalid_entry" if digit else "no_input"])
        if failures >= menu.retries:
            return menu.fallback


async def run_menu(
    ctx: IvrContext,
    start: str,
    flows: Mapping[str, Flow],
    *,
    on_queue: QueueHook = _default_on_queue,
    voicemail: VoicemailHook | None = None,
) -> None:
    """Run menus from ``start`` until an action ends the IVR (queue, voicemail, transfer, hangup)."""
    session = ctx.session
    current: str | None = start
    while current is not None and not session.ended:
        menu = ctx.menus.get(current)
        if menu is None:
            log.error("ivr %s: no menu %r", session.call_id, current)
            await ctx.play(["system_busy"], barge_in=False)
            return
        ctx.menu = current
        action = await _ask(ctx, menu)
        current = await _perform(ctx, menu, action, flows, on_queue, voicemail)


async def _perform(
    ctx: IvrContext,
    menu: Menu,
    action: Action,
    flows: Mapping[str, Flow],
    on_queue: QueueHook,
    voicemail: VoicemailHook | None,
) -> str | None:
    """Run one action; returns the menu to continue with, None when the IVR is over."""
    session = ctx.session
    kind, arg = action.kind, action.arg
    log.debug("ivr %s: menu %s -> %s", session.call_id, menu.name, action)
    if kind == "menu":
        return arg
    if kind == "lang":
        session.language = arg
        return menu.name
    if kind == "flow":
        fn = flows.get(arg)
        if fn is None:
            log.warning("ivr %s: flow %r is not available", session.call_id, arg)
            await ctx.play(["system_busy"], barge_in=False)
            return menu.name
        ctx.goto = None
        try:
            await fn(session, ctx)
        except Exception:
            log.exception("ivr %s: flow %s failed", session.call_id, arg)
            await ctx.play(["system_busy"], barge_in=False)
        if ctx.finished:
            return None
        return ctx.goto or menu.name
    if kind == "queue":
        await on_queue(session, arg)
        return None
    if kind == "voicemail":
        if voicemail is None:
            log.warning("ivr %s: voicemail is not available (box %s)", session.call_id, arg)
            await ctx.play(["system_busy"], barge_in=False)
            return menu.name
        await voicemail(session, arg)
        return None
    if kind == "transfer":
        if await session.connect(arg):
            return None
        await ctx.play(["system_busy"], barge_in=False)
        return menu.name
    # hangup
    await ctx.play(["goodbye"], barge_in=False)
    session.hangup()
    return None


def make_ivr_app(
    menus: Mapping[str, Menu],
    flows: Mapping[str, Flow],
    *,
    on_queue: QueueHook = _default_on_queue,
    voicemail: VoicemailHook | None = None,
) -> App:
    """The ``ivr:NAME`` application: answers and runs menu ``session.name``.

    ``flows`` is looked up at run time (a dict filled in later works); ``voicemail(session, box)``
    runs the voicemail app for ``voicemail:BOX`` keys; ``on_queue(session, name)`` hands the call
    to the ACD (default: ``queue_please_hold``, then hang up).
    """

    async def ivr_app(session: CallSession) -> None:
        ctx = IvrContext(session, menus)
        session.answer()
        try:
            await run_menu(ctx, session.name, flows, on_queue=on_queue, voicemail=voicemail)
        finally:
            log.info("ivr %s prompts: %s", session.call_id, ",".join(ctx.played))
            log.info("ivr %s digits: %d", session.call_id, session.digits_received)

    return ivr_app


# ---- validation ------------------------------------------------------------------------------


def parse_menus(
    raw_ivr: Any,
    *,
    prompt_names: Collection[str] | None,
    queues: Collection[str] | None = None,
    boxes_ok: bool = True,
    flows: Collection[str] = BUILTIN_FLOWS,
) -> tuple[dict[str, Menu], list[tuple[str, str]]]:
    """Validate the raw ``[ivr]`` table into menus; problems are ``(key_path, message)`` pairs.

    Checks every reference: menus, flows (``flows``), queues (when ``queues`` is given), prompts
    (when ``prompt_names`` is given) and voicemail boxes (``boxes_ok`` False: none allowed).
    Key paths look like ``ivr.hotline.keys.3``. Menus with problems are still returned, minus
    the broken keys, so a caller may choose to run with warnings.
    """
    problems: list[tuple[str, str]] = []
    menus: dict[str, Menu] = {}
    if not isinstance(raw_ivr, Mapping):
        return menus, [("ivr", "expected a table of menus ([ivr.NAME])")]
    pending: list[tuple[str, Action]] = []  # (key path, action) resolved once every menu is known

    def check_action(path: str, value: Any) -> Action | None:
        if not isinstance(value, str):
            problems.append((path, f"expected an action string, got {type(value).__name__}"))
            return None
        try:
            action = parse_action(value)
        except ValueError as e:
            problems.append((path, str(e)))
            return None
        pending.append((path, action))
        return action

    for name, table in raw_ivr.items():
        base = f"ivr.{name}"
        if not _NAME.match(str(name)):
            problems.append((base, f"bad menu name {name!r}"))
            continue
        if not isinstance(table, Mapping):
            problems.append((base, "expected a table with prompt, timeout_s, retries and keys"))
            continue
        for key in table:
            if key not in MENU_KEYS:
                problems.append(
                    (f"{base}.{key}", f"unknown key; expected one of: {', '.join(sorted(MENU_KEYS))}")
                )
        prompts = _prompts(table.get("prompt"), f"{base}.prompt", prompt_names, problems)
        timeout_s = table.get("timeout_s", DEFAULT_TIMEOUT_S)
        if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not 0 < timeout_s <= 60:
            problems.append((f"{base}.timeout_s", f"expected seconds in (0, 60], got {timeout_s!r}"))
            timeout_s = DEFAULT_TIMEOUT_S
        retries = table.get("retries", DEFAULT_RETRIES)
        if isinstance(retries, bool) or not isinstance(retries, int) or not 1 <= retries <= 10:
            problems.append((f"{base}.retries", f"expected an integer 1..10, got {retries!r}"))
            retries = DEFAULT_RETRIES
        fallback = HANGUP
        if "fallback" in table:
            fallback = check_action(f"{base}.fallback", table["fallback"]) or HANGUP
        keys: dict[str, Action] = {}
        raw_keys = table.get("keys", {})
        if not isinstance(raw_keys, Mapping):
            problems.append((f"{base}.keys", 'expected a table of key = action ("1" = "flow:quote")'))
            raw_keys = {}
        elif not raw_keys:
            problems.append((f"{base}.keys", "no keys: the menu can only time out"))
        for key, value in raw_keys.items():
            path = f"{base}.keys.{key}"
            if key not in DTMF_KEYS:
                problems.append((path, "not a DTMF key; expected one of 0-9, *, #, A-D"))
                continue
            action = check_action(path, value)
            if action is not None:
                keys[key] = action
        menus[name] = Menu(name, prompts, keys, float(timeout_s), retries, fallback)

    for path, action in pending:
        message = _reference_problem(action, menus, flows, queues, boxes_ok)
        if message:
            problems.append((path, message))
    return menus, problems


def _prompts(
    value: Any, path: str, prompt_names: Collection[str] | None, problems: list[tuple[str, str]]
) -> tuple[str, ...]:
    if value is None:
        problems.append((path, "missing: the prompt name(s) the menu plays"))
        return ()
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        problems.append((path, "expected a prompt name or a non-empty list of prompt names"))
        return ()
    if prompt_names is not None:
        for n in names:
            if n not in prompt_names:
                problems.append((path, f"unknown prompt {n!r}"))
    return tuple(names)


def _reference_problem(
    action: Action,
    menus: Mapping[str, Menu],
    flows: Collection[str],
    queues: Collection[str] | None,
    boxes_ok: bool,
) -> str | None:
    kind, arg = action.kind, action.arg
    if kind == "menu" and arg not in menus:
        return f"unknown menu {arg!r}" + _choices(menus)
    if kind == "flow" and arg not in flows:
        return f"unknown flow {arg!r}" + _choices(flows)
    if kind == "queue" and queues is not None and arg not in queues:
        return f"unknown queue {arg!r}" + _choices(queues)
    if kind == "voicemail" and not boxes_ok:
        return f"voicemail is not available here (box {arg!r})"
    return None


def _choices(names: Collection[str]) -> str:
    return f"; expected one of: {', '.join(sorted(names))}" if names else "; none are defined"
