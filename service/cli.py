"""The `mentorflow` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence

from aiohttp import web

from service.http.app import create_app
from service.runtime import open_store
from service.settings import Settings, SettingsError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mentorflow", description="Event-sourced lifecycle of mentoring relationships."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    return parser


async def _serve(settings: Settings, host: str, port: int) -> None:
    store = await open_store(settings)
    runner = web.AppRunner(create_app(settings, store), handle_signals=True)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        logging.getLogger("mentorflow").info("listening on http://%s:%d", host, port)
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await store.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"mentorflow: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_serve(settings, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
