"""The payment gateway boundary (see base.py). The implementations are imported from their own
modules, so importing the interface does not load the Stripe SDK."""

from billing_portal.gateway.base import (
    GatewayCharge,
    GatewayCheckoutSession,
    GatewayCustomer,
    GatewayDispute,
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
    "GatewayCharge",
    "GatewayCheckoutSession",
    "GatewayCustomer",
    "GatewayDispute",
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
