"""The local gateway's object store: Stripe-shaped objects kept as JSON, for development, the demo
and tests. A Django model of the billing_portal app, defined here so the gateway package stays a
leaf (it imports nothing of ours)."""

from django.db import models


class LocalGatewayObject(models.Model):
    object_type = models.CharField(max_length=40)  # customer, checkout.session, subscription, invoice, ...
    object_id = models.CharField(max_length=100, unique=True)
    customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    data = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "billing_portal"
        indexes = [models.Index(fields=["object_type", "customer_id"])]

    def __str__(self) -> str:
        return self.object_id
