"""URLs of the billing portal: tenant pages (mounted under /t/<slug>/), the webhook endpoint and the
local gateway's hosted-page stand-ins (DEBUG only)."""

from django.urls import path

from billing_portal import dev_views, invoice_views, views

# Tenant pages, mounted under /t/<slug>/.
tenant_patterns = [
    # Billing tab
    path("billing/", views.billing, name="billing"),
    path("billing/manage/", views.manage, name="billing_manage"),
    path("billing/resume/", views.resume, name="billing_resume"),
    path("billing/cancel/", views.cancel_subscription, name="billing_cancel"),
    path("billing/plans/<slug:plan_code>/subscribe/", views.subscribe, name="billing_subscribe"),
    path("billing/plans/<slug:plan_code>/change/", views.change_plan, name="billing_change_plan"),
    path("billing/plans/<slug:plan_code>/contact/", views.request_contact, name="billing_contact"),
    path("billing/plans/<slug:plan_code>/preview/", views.change_preview, name="billing_change_preview"),
    path("billing/checkout-status/", views.checkout_status, name="billing_checkout_status"),
    path(
        "billing/scheduled/<int:change_id>/cancel/", views.cancel_scheduled, name="billing_cancel_scheduled"
    ),
    # AI Credits purchases (the AI Credits page's Subscribe Now and Buy extra credits dialogs)
    path("ai-credits/plans/<slug:plan_code>/subscribe/", views.ai_subscribe, name="credits_subscribe"),
    path("ai-credits/extra-pack/", views.ai_extra_pack, name="credits_extra_pack"),
    # Invoices
    path("invoices/", invoice_views.invoices, name="invoices"),
    path("invoices/export.csv", invoice_views.invoice_csv, name="invoice_csv"),
    path("invoices/<int:invoice_id>/", invoice_views.invoice_detail, name="invoice_detail"),
    path("invoices/<int:invoice_id>/pdf/", invoice_views.invoice_pdf, name="invoice_pdf"),
]

# Outside any tenant.
global_patterns = [
    path("billing/webhooks/stripe/", views.stripe_webhook, name="stripe_webhook"),
    path("dev/billing/checkout/<str:session_id>/", dev_views.checkout, name="dev_checkout"),
    path("dev/billing/portal/<str:customer_id>/", dev_views.portal, name="dev_portal"),
    path("dev/billing/invoices/<str:gateway_invoice_id>/", dev_views.invoice, name="dev_invoice"),
]
