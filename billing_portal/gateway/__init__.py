"""The payment gateway boundary (see base.py). The implementations are imported from their own
modules, so importing the interface does not load the Stripe SDK."""

from billing_portal.gateway.base import (
    GatewayCheckoutSession,
    GatewayCustomer,
    GatewayError,
    GatewayEvent,
    GatewayInvoice,
    GatewayInvoiceLine,
    GatewaySchedule,
    GatewaySubscription,
    PaymentGateway,
    WebhookRejected,
    WebhookSignatureError,
)

__all__ = [
    "GatewayCheckoutSession",
    "GatewayCustomer",
    "GatewayError",
    "GatewayEvent",
    "GatewayInvoice",
    "GatewayInvoiceLine",
    "GatewaySchedule",
    "GatewaySubscription",
    "PaymentGateway",
    "WebhookRejected",
    "WebhookSignatureError",
]
