"""`vizochok demo`: the whole webhook flow on one machine, printed step by step.

The demo issues a throwaway CA, starts the sample merchant over HTTPS with it, and
starts the platform's HTTP API on a temporary SQLite database. It then plays three
parts. As a merchant's admin it saves the webhook URLs, reads them back and probes
them. As the platform's search it prices and filters four search results. As the
platform's agent it starts a session from the merchant's cart, then changes it.
Every server listens on 127.0.0.1, and everything the demo creates is removed when
it ends.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import aiohttp
import trustme
from aiohttp import web
from pydantic import SecretStr

from admin_api.app import create_app
from admin_api.sample_merchant import (
    CART_PATH,
    LOOPBACK_HOST,
    PRODUCTS_PATH,
    SampleMerchant,
    serve_merchant,
)
from dispatcher.logging import configure_logging
from dispatcher.service import Dispatcher
from dispatcher.settings import Settings
from dispatcher.storage.migrate import upgrade_to_head

STORE_ID = "store-1"
DEMO_SESSION_ID = "demo-customer"

# Four search results, one per outcome of the products check. The catalog fields
# are passed through to the platform's response unchanged.
SEARCH_RESULTS = (
    {"sku": "хліб-001", "name": "Хліб житній"},
    {"sku": "kefir-001", "name": "Kefir 1% 900 g"},
    {"sku": "yogurt-001", "name": "Strawberry yogurt 250 g"},
    # The merchant has delisted this product since its last catalog upload.
    {"sku": "cheese-404", "name": "Camembert 125 g"},
)
EXPECTED_AVAILABLE = ["хліб-001", "kefir-001"]
EXPECTED_UNAVAILABLE = {"yogurt-001": "out_of_stock", "cheese-404": "not_returned"}

# Secrets and keys are printed with only this many leading characters, enough to
# tell two apart.
VISIBLE_SECRET_CHARS = 6


class DemoFailed(Exception):
    """A step received a response other than the one the flow expects."""


# NOTE: the output contains Cyrillic. When stdout's encoding cannot represent it
# (PYTHONIOENCODING=ascii, for example), printing fails and the demo exits 1.
class StepPrinter:
    """Prints numbered step headings, notes and JSON bodies to stdout."""

    def __init__(self) -> None:
        self.number = 0
        self.current = "start-up"

    def step(self, title: str) -> None:
        self.number += 1
        self.current = f"step {self.number} ({title})"
        # Flushing here keeps stdout in step with log lines on stderr when both
        # go to one pipe.
        print(f"\n=== Step {self.number}: {title} ===", flush=True)

    def note(self, text: str) -> None:
        print(text)

    def request(self, method: str, url: str, body: Any | None) -> None:
        print(f"-> {method} {url}")
        if body is not None:
            print(_pretty(body))

    def response(self, status: int, body: Any) -> None:
        print(f"<- {status}")
        print(_pretty(_mask_secret_field(body)))


@dataclass(frozen=True)
class DemoRun:
    """State shared by the API steps: the printer, the running servers, the tenant."""

    printer: StepPrinter
    http: aiohttp.ClientSession
    api_url: str
    merchant: SampleMerchant
    merchant_url: str
    tenant_id: str
    admin_key: str
    internal_token: str

    async def call(
        self, method: str, path: str, token: str, body: Any | None = None
    ) -> Any:
        """Send one request to the platform and print it with its response.

        Returns the parsed JSON body. Raises DemoFailed unless the status is 200.
        """
        url = self.api_url + path
        self.printer.request(method, url, body)
        headers = {"Authorization": f"Bearer {token}"}
        async with self.http.request(
            method, url, json=body, headers=headers
        ) as http_response:
            status = http_response.status
            raw = await http_response.read()
        try:
            response = json.loads(raw)
        except ValueError:
            raise DemoFailed(
                f"{method} {path} returned {status} without JSON"
            ) from None
        self.printer.response(status, response)

        if status != 200:
            raise DemoFailed(f"{method} {path} returned {status}: {response}")
        return response


Step = Callable[[DemoRun], Awaitable[None]]


async def run_demo() -> int:
    """Run every step and return the exit code: 0 on success, 1 on any failure."""
    # Warnings still reach stderr, but routine INFO events would bury the steps.
    configure_logging(level="WARNING", log_format="console")
    printer = StepPrinter()

    try:
        with tempfile.TemporaryDirectory(prefix="vizochok-demo-") as workdir:
            async with AsyncExitStack() as stack:
                demo = await _start_servers(stack, printer, Path(workdir))
                for step in API_STEPS:
                    await step(demo)
    # A demo ends with one readable line that names the failed step, which is more
    # useful to its reader than a traceback through aiohttp and SQLAlchemy code.
    except Exception as exc:
        print(f"\nDemo failed in {printer.current}: {_describe(exc)}")
        return 1

    print("\nDemo finished: every step succeeded.")
    return 0


# --- start-up steps ----------------------------------------------------------


async def _start_servers(
    stack: AsyncExitStack, printer: StepPrinter, workdir: Path
) -> DemoRun:
    """Start the merchant and the platform. `stack` stops them in reverse order."""
    ca_file, server_ssl = _create_ca(printer, workdir)
    merchant = SampleMerchant()
    merchant_url = await _start_merchant(stack, printer, merchant, server_ssl)

    internal_token = secrets.token_urlsafe(32)
    settings = _demo_settings(workdir, ca_file, internal_token)
    tenant_id, admin_key = await _prepare_database(printer, settings)
    api_url = await _start_platform(stack, printer, settings)

    # trust_env=False ignores HTTP(S)_PROXY, so requests stay on loopback.
    http = await stack.enter_async_context(aiohttp.ClientSession(trust_env=False))
    return DemoRun(
        printer=printer,
        http=http,
        api_url=api_url,
        merchant=merchant,
        merchant_url=merchant_url,
        tenant_id=tenant_id,
        admin_key=admin_key,
        internal_token=internal_token,
    )


def _create_ca(printer: StepPrinter, workdir: Path) -> tuple[Path, ssl.SSLContext]:
    printer.step("Create a throwaway certificate authority")
    ca = trustme.CA()
    ca_file = workdir / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(LOOPBACK_HOST).configure_cert(server_ssl)

    printer.note(f"CA certificate: {ca_file}")
    printer.note(
        "The merchant's certificate for 127.0.0.1 is signed by this CA, and the "
        "platform trusts it through VIZOCHOK_EXTRA_CA_FILE."
    )
    return ca_file, server_ssl


async def _start_merchant(
    stack: AsyncExitStack,
    printer: StepPrinter,
    merchant: SampleMerchant,
    server_ssl: ssl.SSLContext,
) -> str:
    printer.step("Start the sample merchant over HTTPS")
    base_url = await stack.enter_async_context(serve_merchant(merchant, server_ssl))
    # A cart the customer filled on the website before talking to the assistant.
    merchant.seed_cart(DEMO_SESSION_ID, {"apples-kg": 1.5})

    printer.note(f"Listening on {base_url}")
    printer.note("Catalog (prices and stock live only here, never on the platform):")
    for product in merchant.catalog.values():
        promo = ""
        if product.promo_price is not None:
            promo = f", promotion {product.promo_price:.2f} ({product.promo_label})"
        printer.note(
            f"  {product.sku:<11} {product.name:<24} {product.price:>6.2f}, "
            f"stock {product.stock:g} {product.unit}{promo}"
        )
    printer.note(f"Cart of session {DEMO_SESSION_ID!r}: 1.5 kg apples-kg")
    return base_url


def _demo_settings(workdir: Path, ca_file: Path, internal_token: str) -> Settings:
    return Settings(
        # A database of its own, so the demo never touches ./vizochok.db.
        database_url=f"sqlite+aiosqlite:///{workdir / 'vizochok.db'}",
        # The URL policy rejects loopback merchants unless the network is exempt.
        allow_private_networks=(ip_network("127.0.0.0/8"),),
        extra_ca_file=ca_file,
        internal_token=SecretStr(internal_token),
    )


async def _prepare_database(
    printer: StepPrinter, settings: Settings
) -> tuple[str, str]:
    printer.step("Create the platform's database and a tenant")
    # Alembic's upgrade blocks and runs its own event loop, so it gets a thread.
    await asyncio.to_thread(upgrade_to_head, settings.database_url)
    printer.note(f"Migrated {settings.database_url}")

    dispatcher = Dispatcher.create(settings)
    try:
        tenant_id, admin_key = await dispatcher.repository.create_tenant("Demo shop")
    finally:
        await dispatcher.repository.dispose()

    printer.note(f"Tenant id: {tenant_id}")
    printer.note(f"Admin key: {_mask(admin_key)}")
    return tenant_id, admin_key


async def _start_platform(
    stack: AsyncExitStack, printer: StepPrinter, settings: Settings
) -> str:
    printer.step("Start the platform's HTTP API")
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    site = web.TCPSite(runner, LOOPBACK_HOST, 0)
    await site.start()

    port: int = runner.addresses[0][1]
    api_url = f"http://{LOOPBACK_HOST}:{port}"
    printer.note(f"Listening on {api_url}")
    return api_url


# --- API steps ---------------------------------------------------------------


async def _configure_webhooks(demo: DemoRun) -> None:
    demo.printer.step("The admin saves the webhook URLs")
    body = {
        "products_url": demo.merchant_url + PRODUCTS_PATH,
        "cart_url": demo.merchant_url + CART_PATH,
        "cart_get_url": demo.merchant_url + CART_PATH,
    }
    response = await demo.call("PATCH", "/api/v1/admin/webhooks", demo.admin_key, body)

    secret = response.get("secret")
    if not isinstance(secret, str):
        raise DemoFailed("the PATCH response contains no generated secret")
    demo.merchant.set_secret(secret)
    demo.printer.note(
        "The platform generated the signing secret above, masked here. This "
        "response is the only place it is shown, so the admin copies it into the "
        "merchant's configuration now."
    )


async def _read_webhooks(demo: DemoRun) -> None:
    demo.printer.step("The admin reads the settings back")
    response = await demo.call("GET", "/api/v1/admin/webhooks", demo.admin_key)

    if response.get("has_secret") is not True:
        raise DemoFailed("GET /api/v1/admin/webhooks reports no secret")
    demo.printer.note("The secret itself is never returned, only has_secret.")


async def _probe_products_webhook(demo: DemoRun) -> None:
    demo.printer.step("The admin tests the products webhook")
    path = "/api/v1/admin/webhooks/test"
    response = await demo.call("POST", path, demo.admin_key)

    if response.get("ok") is not True:
        raise DemoFailed(f"the probe failed with error {response.get('error')!r}")
    demo.printer.note(
        "The merchant verified the signature and responded within the timeout."
    )


async def _check_products(demo: DemoRun) -> None:
    demo.printer.step("Search asks for live prices and stock of four results")
    path = f"/internal/v1/tenants/{demo.tenant_id}/products/check"
    body = {"store_id": STORE_ID, "products": list(SEARCH_RESULTS)}
    response = await demo.call("POST", path, demo.internal_token, body)

    _print_products_outcome(demo.printer, response)
    available = [product["sku"] for product in response["products"]]
    reasons = {item["sku"]: item["reason"] for item in response["unavailable"]}
    if available != EXPECTED_AVAILABLE or reasons != EXPECTED_UNAVAILABLE:
        raise DemoFailed(
            f"expected available {EXPECTED_AVAILABLE} and unavailable "
            f"{EXPECTED_UNAVAILABLE}, got {available} and {reasons}"
        )


def _print_products_outcome(printer: StepPrinter, response: dict[str, Any]) -> None:
    printer.note("\nAvailable (the assistant may show these):")
    for product in response["products"]:
        price = f"{product['price']:.2f}"
        if product["promo_price"] is not None:
            price = (
                f"{product['promo_price']:.2f} instead of {price} "
                f"({product['promo_label']})"
            )
        printer.note(f"  {product['sku']:<11} {product['name']:<24} {price}")

    printer.note("Unavailable (never shown to the customer):")
    for item in response["unavailable"]:
        printer.note(f"  {item['sku']:<11} {item['reason']}")


async def _start_session(demo: DemoRun) -> None:
    demo.printer.step("A conversation starts: the platform reads the merchant's cart")
    path = f"/internal/v1/tenants/{demo.tenant_id}/sessions"
    body = {"store_id": STORE_ID, "session_id": DEMO_SESSION_ID}
    response = await demo.call("POST", path, demo.internal_token, body)

    seeded = [item["sku"] for item in response["items"]]
    if response.get("ok") is not True or seeded != ["apples-kg"]:
        raise DemoFailed(f"expected the seeded cart ['apples-kg'], got {seeded}")
    demo.printer.note("The session cart now holds what the customer had on the site.")


# Cart operations the assistant makes, each with the outcome the flow expects:
# True for a confirmed change, or the merchant's rejection reason.
CART_OPERATIONS: tuple[tuple[dict[str, Any], bool | str], ...] = (
    (
        {
            "action": "add",
            "sku": "kefir-001",
            "name": "Kefir 1% 900 g",
            "quantity": 2,
            "price": 52.0,
            "promo_price": 42.0,
        },
        True,
    ),
    ({"action": "update_quantity", "sku": "apples-kg", "quantity": 0.5}, True),
    (
        {
            "action": "add",
            "sku": "yogurt-001",
            "name": "Strawberry yogurt 250 g",
            "quantity": 1,
            "price": 38.5,
        },
        "out_of_stock",
    ),
    ({"action": "remove", "sku": "kefir-001"}, True),
    ({"action": "clear"}, True),
)


async def _change_cart(demo: DemoRun) -> None:
    path = f"/internal/v1/tenants/{demo.tenant_id}/cart"
    for operation, expected in CART_OPERATIONS:
        demo.printer.step(f"The assistant asks the merchant to {operation['action']}")
        body = {"store_id": STORE_ID, "session_id": DEMO_SESSION_ID, **operation}
        response = await demo.call("POST", path, demo.internal_token, body)

        if expected is True and response.get("ok") is not True:
            raise DemoFailed(f"expected the merchant to confirm, got {response}")
        if expected is not True and response.get("reason") != expected:
            raise DemoFailed(f"expected the reason {expected!r}, got {response}")
        _print_cart_outcome(demo.printer, response)


def _print_cart_outcome(printer: StepPrinter, response: dict[str, Any]) -> None:
    if response["ok"] is not True:
        printer.note(
            f"The merchant rejected it ({response['reason']}); the session cart "
            "is unchanged and the assistant tells the customer why."
        )
        return
    change = response["cart_changed"]
    printer.note(f"cart_changed: {change['action']}, total {change['total']:.2f}")
    for item in change["items"]:
        price = (
            item["promo_price"] if item["promo_price"] is not None else item["price"]
        )
        printer.note(f"  {item['sku']:<11} {item['quantity']:g} x {price:.2f}")


# The API steps in order. Each prints its own heading.
API_STEPS: tuple[Step, ...] = (
    _configure_webhooks,
    _read_webhooks,
    _probe_products_webhook,
    _check_products,
    _start_session,
    _change_cart,
)


# --- output helpers ----------------------------------------------------------


def _pretty(body: Any) -> str:
    text = json.dumps(body, indent=2, ensure_ascii=False)
    return "\n".join("   " + line for line in text.splitlines())


def _mask(secret: str) -> str:
    hidden = len(secret) - VISIBLE_SECRET_CHARS
    return secret[:VISIBLE_SECRET_CHARS] + "*" * max(hidden, 0)


def _mask_secret_field(body: Any) -> Any:
    if isinstance(body, dict) and isinstance(body.get("secret"), str):
        return {**body, "secret": _mask(body["secret"])}
    return body


def _describe(exc: Exception) -> str:
    if isinstance(exc, DemoFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
