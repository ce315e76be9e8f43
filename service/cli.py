"""The `mentorflow` command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from aiohttp import web

from service import logs
from service.http.app import create_app
from service.http.tokens import ROLES, TokenRegistry
from service.runtime import open_store
from service.settings import Settings, SettingsError
from service.store.errors import StoreUnavailable

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
    tokens = commands.add_parser("tokens", help="manage API tokens")
    token_commands = tokens.add_subparsers(dest="tokens_command", required=True)
    create = token_commands.add_parser("create", help="print a new token on stdout")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name")
    return parser


async def _serve(settings: Settings, host: str, port: int) -> None:
    """Serve until SIGTERM or SIGINT, then stop taking connections, let the
    requests in flight finish, and close the store."""
    store = await open_store(settings)
    runner = web.AppRunner(
        create_app(settings, store), handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE_S
    )
    await runner.setup()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("listening", extra={"url": f"http://{host}:{port}"})
        await stop.wait()
        log.info("stopping: finishing requests in flight")
    finally:
        await runner.cleanup()
        await store.close()
        log.info("stopped")


async def _create_token(settings: Settings, role: str, name: str | None) -> None:
    store = await open_store(settings)
    try:
        token, _ = await TokenRegistry(store).create(role, name)  # type: ignore[arg-type]
        print(token)
    finally:
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.configure()
    try:
        settings = Settings.from_env()
        if args.command == "serve":
            asyncio.run(_serve(settings, args.host, args.port))
        elif args.command == "tokens":
            asyncio.run(_create_token(settings, args.role, args.name))
    except (SettingsError, ValueError) as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 2
    except StoreUnavailable as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
