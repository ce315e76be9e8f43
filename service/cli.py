"""The `mentorflow` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import socket
import sys
from collections.abc import Coroutine, Sequence
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from aiohttp import web

import workflows
from domain.schema import parse_datetime
from projections import all_projections
from service import auditor
from service.access.tokens import ROLES, TokenRegistry
from service.auditor import evidence
from service.composition import components as composition
from service.http.app import create_app
from service.http.server import ServiceRunner
from service.platform import event_loop, logs
from service.platform.gc_tuning import tune_gc
from service.platform.settings import Settings, SettingsError
from service.store.errors import StoreUnavailable
from service.store.opening import NoDatabase, open_existing_store, open_store

T = TypeVar("T")

log = logging.getLogger("mentorflow")
SHUTDOWN_GRACE_S = 30.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mentorflow", description="Event-sourced lifecycle of mentoring relationships."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    commands.add_parser(
        "worker",
        help="run projections, webhook dispatch and checkpoint publishing, without HTTP"
        " (until SIGTERM)",
    )

    tokens = commands.add_parser("tokens", help="manage API tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = token_commands.add_parser("create", help="print a new token on stdout")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", required=True, help="unique: 1-64 of a-z 0-9 . _ -")
    create.add_argument(
        "--program",
        dest="programs",
        action="append",
        metavar="ID",
        help="limit the token to this program (repeatable; not for admin)",
    )
    token_commands.add_parser("list", help="every token (never the token itself), as JSON lines")
    revoke = token_commands.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("token_id", metavar="ID")

    replay = commands.add_parser("replay", help="a relationship's state and timeline")
    replay.add_argument("relationship_id")
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--version", type=int)
    when.add_argument("--as-of", dest="as_of", help="ISO 8601 date-time with a time zone")
    replay.add_argument("--format", choices=("json", "text"), default="json")

    verify = commands.add_parser("verify", help="check hash chains (exit 1 if broken)")
    target = verify.add_mutually_exclusive_group(required=True)
    target.add_argument("relationship_id", nargs="?")
    target.add_argument("--all", action="store_true")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.add_argument(
        "--trusted-checkpoint",
        metavar="FILE",
        help="with --all: a checkpoint kept outside the database (JSON or signed note)",
    )
    verify.add_argument(
        "--public-key",
        metavar="KEY",
        help="the checkpoint's Ed25519 public key: a PEM file or base64 (pins the key)",
    )

    projections = commands.add_parser("projections", help="manage read models")
    projection_commands = projections.add_subparsers(dest="projections_command", required=True)
    rebuild = projection_commands.add_parser("rebuild", help="rebuild read models from the log")
    rebuild.add_argument(
        "name",
        nargs="?",
        choices=[p.name for p in all_projections()],
        help="one read model (default: every one)",
    )

    evidence.add_parser(commands)

    diagram = commands.add_parser("diagram", help="the lifecycle diagram")
    diagram.add_argument("--format", choices=("mermaid", "svg"), default="mermaid")

    demo = commands.add_parser("demo", help="load sample relationships across all phases (once)")
    demo.add_argument(
        "--force", action="store_true", help="add them even to a database that holds other data"
    )
    return parser


class PortInUse(Exception):
    """The address to listen on is taken (or not ours): one line, no traceback."""


async def _serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking connections, let the
    requests in flight finish, stop the workers, and close the store. The
    address is taken first, so a port in use is one line, before any database
    is started."""
    sock = _listen(host, port)
    dsn, store = await open_store(settings)
    runner = ServiceRunner(
        create_app(settings, store, dsn, background=settings.run_workers),
        handle_signals=False,
        shutdown_timeout=SHUTDOWN_GRACE_S,
    )
    await runner.setup()
    stop = _stop_on_signals()
    try:
        await web.SockSite(runner, sock).start()
        log.info("listening", extra={"url": f"http://{host}:{port}", "loop": event_loop.name()})
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        await runner.cleanup()
        await store.close()
        log.info("stopped")


async def _work(settings: Settings) -> None:
    """The workers without HTTP, until SIGTERM or SIGINT: any number of
    `worker` and `serve` processes may run against one database."""
    stop = _stop_on_signals()
    async with composition.opened(settings) as components:
        await components.start_workers()
        log.info("working")
        try:
            await stop.wait()
            log.info("stopping")
        finally:
            await components.stop_workers()
    log.info("stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    return stop


def _listen(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), reuse_port=False, backlog=128)
    except OSError as exc:
        raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


async def _tokens(args: argparse.Namespace, settings: Settings) -> int:
    """`mentorflow tokens create|list|revoke`."""
    if args.tokens_command == "revoke":
        try:
            token_id = UUID(args.token_id)
        except ValueError:
            raise ValueError(f"{args.token_id!r} is not a token id") from None
    # Listing or revoking needs the service's database: never start an empty one.
    opening = open_store if args.tokens_command == "create" else open_existing_store
    _, store = await opening(settings)
    try:
        registry = TokenRegistry(store)
        if args.tokens_command == "create":
            token, _ = await registry.create(args.role, args.name, args.programs)
            print(token)
        elif args.tokens_command == "list":
            after: int | None = 0
            while after is not None:
                items, after = await registry.list(after=after, limit=500)
                for item in items:
                    print(json.dumps(item.to_dict()))
        elif not await registry.revoke(token_id):
            print(f"mentorflow: no token {token_id}", file=sys.stderr)
            return 1
    finally:
        await store.close()
    return 0


def _moment(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_datetime(raw)
    except ValueError as exc:
        raise ValueError(f"--as-of {exc}, not {raw!r}") from None


def _diagram(form: str) -> int:
    try:
        print(workflows.diagram(form))
    except workflows.DiagramUnavailable as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace, settings: Settings) -> int:
    command = args.command

    def run(main: Coroutine[Any, Any, T]) -> T:
        return event_loop.run(main, settings.event_loop)

    if command == "serve":
        run(_serve(settings, args.host, args.port))
        return 0
    if command == "worker":
        run(_work(settings))
        return 0
    if command == "tokens":
        return run(_tokens(args, settings))
    if command == "replay":
        return run(
            auditor.replay(
                settings, args.relationship_id, args.version, _moment(args.as_of), fmt=args.format
            )
        )
    if command == "verify":
        return run(
            auditor.verify(
                settings,
                args.relationship_id,
                all=args.all,
                fmt=args.format,
                trusted_checkpoint=args.trusted_checkpoint,
                public_key=args.public_key,
            )
        )
    if command == "projections":
        return run(auditor.rebuild(settings, args.name))
    if command == "diagram":
        return _diagram(args.format)
    if command == "evidence":
        return evidence.run(args, settings)
    return run(auditor.demo(settings, force=args.force))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 2
    logs.configure(settings.log_format)
    tune_gc()
    try:
        return _run(args, settings)
    except (SettingsError, ValueError) as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 2
    except (StoreUnavailable, NoDatabase) as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 3
    except PortInUse as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 4


if __name__ == "__main__":
    sys.exit(main())
