"""The `vizochok` command line: serve, migrate, tenant create, demo."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiohttp import web

from dispatcher.errors import ConfigurationError, DispatcherError
from dispatcher.logging import configure_logging
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings, load_settings
from dispatcher.storage.migrate import upgrade_to_head


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"vizochok: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.resolved_log_format)

    try:
        result: int = args.run(settings, args)
    except ConfigurationError as exc:
        print(f"vizochok: {exc}", file=sys.stderr)
        return 2
    except DispatcherError as exc:
        print(f"vizochok: {exc}", file=sys.stderr)
        return 1
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vizochok", description="VIZOCHOK merchant webhook dispatcher"
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="listen address (default: VIZOCHOK_HOST)")
    serve.add_argument(
        "--port", type=_port, help="listen port, 0-65535 (default: VIZOCHOK_PORT)"
    )
    serve.set_defaults(run=_serve)

    migrate = commands.add_parser(
        "migrate", help="apply database migrations to VIZOCHOK_DATABASE_URL"
    )
    migrate.set_defaults(run=_migrate)

    tenant = commands.add_parser("tenant", help="manage tenants")
    tenant_commands = tenant.add_subparsers(required=True, metavar="ACTION")
    create = tenant_commands.add_parser(
        "create", help="create a tenant and print its id and admin key as JSON"
    )
    create.add_argument("name", help="the tenant's display name")
    create.set_defaults(run=_tenant_create)

    demo = commands.add_parser(
        "demo", help="run the whole flow against a sample HTTPS merchant on loopback"
    )
    demo.set_defaults(run=_demo)
    return parser


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    if settings.is_sqlite:
        # The embedded default needs no separate step; PostgreSQL deployments run
        # `vizochok migrate` once per release instead of on every instance start.
        upgrade_to_head(settings.database_url)
    host = args.host or settings.host
    port = args.port if args.port is not None else settings.port
    settings = settings.model_copy(update={"host": host, "port": port})

    from admin_api.app import create_app

    try:
        web.run_app(create_app(settings), host=host, port=port, print=None)
    except OSError as exc:
        # Address in use, a host name that does not resolve, an address not on
        # this machine: the operator's fix is the host or port, not our code.
        print(f"vizochok: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    return 0


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0 to 65535, got {port}")
    return port


def _migrate(settings: Settings, _args: argparse.Namespace) -> int:
    upgrade_to_head(settings.database_url)
    print(json.dumps({"migrated": True}))
    return 0


def _tenant_create(settings: Settings, args: argparse.Namespace) -> int:
    name = args.name.strip()
    if not name or len(name) > 200:
        raise ConfigurationError("NAME must be 1 to 200 characters")
    if settings.is_sqlite:
        upgrade_to_head(settings.database_url)

    async def create() -> tuple[str, str]:
        dispatcher = Dispatcher.create(settings)
        try:
            return await dispatcher.repository.create_tenant(name)
        finally:
            await dispatcher.repository.dispose()

    tenant_id, api_key = asyncio.run(create())
    print(json.dumps({"tenant_id": tenant_id, "api_key": api_key}))
    return 0


def _demo(settings: Settings, _args: argparse.Namespace) -> int:
    from admin_api.demo import run_demo

    return asyncio.run(run_demo())


if __name__ == "__main__":
    sys.exit(main())
