from django.apps import AppConfig


class BillingPortalConfig(AppConfig):
    name = "billing_portal"
    verbose_name = "Billing portal, payments and invoices"

    def ready(self) -> None:
        from billing_portal import (
            checks,  # noqa: F401  (registers the system checks)
            dashboard,
            navigation,
        )
        from billing_portal.gateway.factory import wire_local
        from billing_portal.services import price_of
        from billing_portal.tasks import deliver_in_process
        from tenants.audit import register_sentences

        # The local stand-in delivers its events to our webhook receiver and prices from our catalog.
        wire_local(deliver=deliver_in_process, price_catalog=price_of)
        navigation.register()
        dashboard.register()  # the Overview's alerts, product and next-invoice tiles
        register_sentences(
            {
                "checkout.started": "{actor} opened the checkout for {target}",
                "subscription.change_pending": "{actor}'s change to {target} waits for its payment",
                "subscription.duplicate_canceled": "A second subscription next to {target} was canceled; its payments were refunded in full",
                "billing.customer_deleted": "The customer {target} was deleted at the payment provider",
                "payment.disputed": "The payment of {target} was disputed with the bank",
                "subscription.subscribed_now": "{actor} subscribed to {target} with the saved card",
                "subscription.awaiting_confirmation": "{actor}'s subscription to {target} waits for the bank's confirmation",
                "extra_pack.payment_failed": "{actor}'s payment for {target} was declined",
            },
            labels={
                "checkout.started": "Checkout opened",
                "subscription.change_pending": "Plan change waiting for payment",
                "subscription.duplicate_canceled": "Second subscription canceled",
                "billing.customer_deleted": "Customer deleted at the payment provider",
                "payment.disputed": "Payment disputed",
                "subscription.subscribed_now": "Subscribed",
                "subscription.awaiting_confirmation": "Payment waiting for confirmation",
                "extra_pack.payment_failed": "Extra credits payment declined",
            },
        )
