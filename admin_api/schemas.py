"""Request bodies of the admin API. Types are strict: no coercion of "5" to 5."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class WebhooksPatch(BaseModel):
    """PATCH /api/v1/admin/webhooks. An absent field keeps its stored value."""

    model_config = ConfigDict(extra="forbid", strict=True)

    products_url: str | None = None
    cart_url: str | None = None
    cart_get_url: str | None = None
    secret: str | None = None
    timeout_seconds: float | None = Field(default=None, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _reject_null(cls, value: object) -> object:
        if value is None:
            raise ValueError(
                "null is not allowed; omit the field to keep its value, "
                'or send "" to clear a URL'
            )
        return value


class WebhookTestRequest(BaseModel):
    """POST /api/v1/admin/webhooks/test; an empty body probes the products URL."""

    model_config = ConfigDict(extra="forbid", strict=True)

    webhook: Literal["products", "cart_get", "cart"] = "products"


class WebhooksView(BaseModel):
    products_url: str
    cart_url: str
    cart_get_url: str
    has_secret: bool
    timeout_seconds: float
    # Circuit state per webhook on the instance that served the request: closed, open or
    # half_open. Circuits are per instance, so behind a load balancer two
    # requests may see different states.
    circuit: dict[str, str]
