"""Command line: ``softswitch run|check|registrations -c FILE`` and ``softswitch prompts build``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from collections.abc import Sequence

from .config import Config, ConfigError, load_config


def _load(path: str) -> Config:
    try:
        return load_config(path)
    except ConfigError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from .server import ListenError, serve

    try:
        import uvloop
    except ImportError:
        logging.getLogger("softswitch").warning("uvloop not installed; using the stdlib event loop")
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        runner(serve(config, media_workers=args.media_workers))
    except ListenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(
        f"{args.config}: ok ({len(config.accounts)} accounts, {len(config.routes)} routes, "
        f"listening on {', '.join(str(lst) for lst in config.listen)})"
    )
    return 0


def cmd_registrations(args: argparse.Namespace) -> int:
    from .location import read_bindings
    from .server import location_db

    config = _load(args.config)
    now = time.time()
    rows = read_bindings(location_db(config), now)
    if not rows:
        print("no registrations")
        return 0
    print(f"{'account':<12} {'expires':>7} {'q':>4}  {'contact':<50} {'source':<28} user-agent")
    for b in rows:
        print(
            f"{b.aor:<12} {b.remaining(now):>7} {b.q:>4g}  {b.contact:<50} {b.source:<28} {b.user_agent or ''}"
        )
    print(f"{len(rows)} bindings, {len({b.aor for b in rows})} accounts")
    return 0


def cmd_prompts_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .media.prompts import PromptError
    from .prompts_build import PromptBuildError, build_prompts, default_root

    root = Path(args.root) if args.root else default_root()
    try:
        written = build_prompts(root, languages=args.lang or ("zh", "en"), only=args.names or None)
    except (PromptBuildError, PromptError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{len(written)} prompts written under {root}")
    return 0


def _when(text: str) -> float:
    from .cdr import parse_when

    try:
        return parse_when(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return n


def cmd_cdr(args: argparse.Namespace) -> int:
    import sqlite3

    from .cdr import CdrError, CdrStore, db_path, format_table, write_csv

    config = _load(args.config)
    path = db_path(config.data_dir)
    records = []
    if path.exists():
        try:
            with CdrStore(path) as store:
                records = store.query(args.since, args.until, args.disposition, args.limit)
        except (CdrError, sqlite3.Error) as e:
            print(f"error: {path}: {e}", file=sys.stderr)
            return 1
    if args.csv:
        write_csv(records, sys.stdout)
        if not records:
            print("no calls", file=sys.stderr)
    elif not records:
        print("no calls")
    else:
        print("\n".join(format_table(records)))
    return 0


def cmd_voicemail_list(args: argparse.Namespace) -> int:
    import sqlite3

    from .voicemail import db_path, format_messages, list_messages

    config = _load(args.config)
    path = db_path(config.data_dir)
    try:
        messages = list_messages(path, args.box)
    except sqlite3.Error as e:
        print(f"error: {path}: {e}", file=sys.stderr)
        return 1
    if not messages:
        print("no messages")
        return 0
    print("\n".join(format_messages(messages)))
    print(f"{len(messages)} messages")
    return 0


def cmd_broker_seed(args: argparse.Namespace) -> int:
    from .config import ConfigError
    from .trading import DEMO_ACCOUNTS, seed_demo, trading_settings

    config = _load(args.config)
    try:
        settings = trading_settings(config)
    except ConfigError as e:
        for problem in e.problems:
            print(f"error: {problem}", file=sys.stderr)
        return 1
    if settings.backend != "sim":
        print(
            f'error: {args.config}: trading.backend is "{settings.backend}"; only "sim" can be seeded',
            file=sys.stderr,
        )
        return 1
    created = seed_demo(settings.db_path)
    if not created:
        print(f"demo accounts already present in {settings.db_path}")
        return 0
    demo = {d.account: d for d in DEMO_ACCOUNTS}
    print(f"{len(created)} demo accounts created in {settings.db_path} (PINs are shown only now)")
    print(f"{'account':<10} {'pin':<8} {'tier':<7} {'cash':>14}")
    for account, pin in created:
        d = demo[account]
        print(f"{account:<10} {pin:<8} {d.tier:<7} {d.cash:>14,.2f}")
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    from .acd.control import ControlError, control_request

    config = _load(args.config)
    request = {"cmd": "agent", "agent": args.agent, "action": args.action, "reason": args.reason or ""}
    try:
        answer = control_request(config.acd.control_socket, request)
    except ControlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not answer.get("ok"):
        print(f"error: {answer.get('error')}", file=sys.stderr)
        return 1
    print(f"agent {args.agent}: {answer.get('state')}")
    return 0


def cmd_agents(args: argparse.Namespace) -> int:
    from .acd.control import ControlError, control_request

    config = _load(args.config)
    try:
        answer = control_request(config.acd.control_socket, {"cmd": "status"})
    except ControlError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    status = answer.get("status") or {}
    if args.json:
        import json

        print(json.dumps(status, indent=1, sort_keys=True))
        return 0
    now = time.time()
    print(f"{'agent':<10} {'state':<10} {'for':>7} {'registered':<10} {'calls':>5}  reason")
    for agent_id, a in sorted(status.get("agents", {}).items()):
        since = a.get("since")
        held = f"{now - since:.0f}s" if isinstance(since, (int, float)) else ""
        print(f"{agent_id:<10} {a.get('state', ''):<10} {held:>7} {a.get('registered', '')!s:<10} "
              f"{a.get('calls', 0):>5}  {a.get('reason') or ''}")  # fmt: skip
    for name, q in sorted(status.get("queues", {}).items()):
        print(f"queue {name}: " + ", ".join(f"{k} {v}" for k, v in sorted(q.items())))
    return 0


def cmd_callbacks_list(args: argparse.Namespace) -> int:
    from .acd.callbacks import format_time, list_callbacks

    config = _load(args.config)
    rows = list_callbacks(config.data_dir, state=args.state)
    if not rows:
        print("no callback requests")
        return 0
    print(f"{'id':>5} {'queue':<12} {'number':<16} {'requested':<19} {'state':<8} {'tries':>5} "
          f"{'agent':<8} last attempt")  # fmt: skip
    for r in rows:
        print(f"{r.id:>5} {r.queue:<12} {r.number:<16} {format_time(r.requested_at):<19} {r.state:<8} "
              f"{r.attempts:>2}/{r.max_attempts:<2} {r.agent or '':<8} {format_time(r.last_attempt)}")  # fmt: skip
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from .cdr import Disposition

    parser = argparse.ArgumentParser(prog="softswitch", description="SIP/RTP softswitch with a built-in ACD")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the switch")
    run.add_argument("-c", "--config", required=True, help="config file (TOML)")
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.add_argument("--media-workers", type=int, default=0, metavar="N",
                     help="run the media engine in N worker processes (default 0: in the switch's process)")  # fmt: skip
    run.set_defaults(func=cmd_run)
    check = sub.add_parser("check", help="validate a config file; exit 1 listing every problem")
    check.add_argument("-c", "--config", required=True)
    check.set_defaults(func=cmd_check)
    regs = sub.add_parser("registrations", help="list the current registrations")
    regs.add_argument("-c", "--config", required=True)
    regs.set_defaults(func=cmd_registrations)
    cdr = sub.add_parser("cdr", help="list call detail records")
    cdr.add_argument("-c", "--config", required=True)
    cdr.add_argument(
        "--since", type=_when, metavar="WHEN", help="calls started at or after WHEN (ISO 8601, today, 1h, 2d)"
    )
    cdr.add_argument("--until", type=_when, metavar="WHEN", help="calls started before WHEN")
    cdr.add_argument("--disposition", choices=[d.value for d in Disposition])
    cdr.add_argument("--limit", type=_positive, metavar="N", help="only the latest N calls")
    cdr.add_argument("--csv", action="store_true", help="RFC 4180 CSV on stdout, times in UTC")
    cdr.set_defaults(func=cmd_cdr)
    prompts = sub.add_parser("prompts", help="IVR prompt files")
    prompts_sub = prompts.add_subparsers(dest="action", required=True)
    build = prompts_sub.add_parser("build", help="regenerate the prompt WAVs with espeak-ng and sox")
    build.add_argument("--root", help="prompts folder (default: prompts/ of the checkout)")
    build.add_argument(
        "--lang", action="append", choices=["zh", "en"], help="only this language (repeatable)"
    )
    build.add_argument("names", nargs="*", metavar="NAMES", help="only these prompts")
    build.set_defaults(func=cmd_prompts_build)
    voicemail = sub.add_parser("voicemail", help="voicemail messages")
    voicemail_sub = voicemail.add_subparsers(dest="action", required=True)
    vm_list = voicemail_sub.add_parser("list", help="list stored messages, oldest first")
    vm_list.add_argument("-c", "--config", required=True)
    vm_list.add_argument("--box", help="only this box")
    vm_list.set_defaults(func=cmd_voicemail_list)
    broker = sub.add_parser("broker", help="the simulated brokerage behind the trading IVR")
    broker_sub = broker.add_subparsers(dest="action", required=True)
    seed = broker_sub.add_parser("seed", help="create the demo accounts (idempotent) and print them")
    seed.add_argument("-c", "--config", required=True)
    seed.set_defaults(func=cmd_broker_seed)
    from .acd.report import add_report_parser

    add_report_parser(sub)
    agent = sub.add_parser("agent", help="log an agent in or out, pause or unpause (running switch)")
    agent.add_argument("action", choices=["login", "logout", "pause", "unpause"])
    agent.add_argument("agent", metavar="AGENT", help="agent id ([agents.ID])")
    agent.add_argument("-c", "--config", required=True)
    agent.add_argument("--reason", help="pause reason code")
    agent.set_defaults(func=cmd_agent)
    agents = sub.add_parser("agents", help="agents' states and queues of the running switch")
    agents.add_argument("-c", "--config", required=True)
    agents.add_argument("--json", action="store_true")
    agents.set_defaults(func=cmd_agents)
    callbacks = sub.add_parser("callbacks", help="queue callback requests")
    callbacks_sub = callbacks.add_subparsers(dest="action", required=True)
    cb_list = callbacks_sub.add_parser("list", help="list callback requests, oldest first")
    cb_list.add_argument("-c", "--config", required=True)
    cb_list.add_argument("--state", choices=["waiting", "calling", "done", "failed"])
    cb_list.set_defaults(func=cmd_callbacks_list)
    args = parser.parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
