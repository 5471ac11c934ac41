"""The Billing tab (subscription card, Plans section, plan-change dialogs), sign-up, and the
gateway's webhook endpoint. Thin views: access check → form → one service → render."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from billing_portal import selectors as billing_selectors
from billing_portal import services, tasks, webhooks
from billing_portal.forms import LeadForm, PlanChangeForm
from billing_portal.gateway.base import WebhookRejected, WebhookSignatureError
from credits import selectors as credit_selectors
from licensing import selectors as licensing_selectors
from plans import selectors as plan_selectors
from plans import services as plan_services
from plans.models import Plan, Product, ScheduledChange
from plans.offers import OfferAction, When, plan_offer, plan_offers, subscription_actions
from sessions_billing.selectors import limit_after_change, limit_stop_warning, usage_for
from tenants import security_codes
from tenants.access import ADMIN_ONLY, ALL_ROLES, TenantRequest, return_path_within, tenant_view
from tenants.errors import BusinessError, error_response, http_error
from tenants.forms import SignupForm
from tenants.models import Role, Tenant

log = logging.getLogger(__name__)


# --- sign-up (a new tenant starts on the trial: orchestrated here, above tenants and plans) -----


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("home")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user, tenant = services.organization_signup(**form.cleaned_data)
        except BusinessError as exc:
            form.add_error("email" if exc.code == "email_taken" else "password", exc.message)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, f"Welcome to Allowance. {tenant.name} is ready.")
            return redirect("tenant_home", slug=tenant.slug)
    return render(request, "registration/signup.html", {"form": form}, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def tenant_new(request: HttpRequest) -> HttpResponse:
    """A signed-in user creates another organization (they become its admin)."""
    name = request.POST.get("name", "")
    if request.method == "POST":
        try:
            tenant = services.organization_create(name=name, admin=request.user)  # type: ignore[arg-type]
        except BusinessError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{tenant.name} is ready.")
            return redirect("tenant_home", slug=tenant.slug)
    return render(request, "tenants/tenant_new.html", {"name": name})


# --- the Billing tab -----------------------------------------------------------------------------


def _billing_enabled() -> None:
    if not settings.BILLING_TAB_ENABLED:
        raise Http404("Billing is handled outside the portal on this deployment.")


def _product(request: HttpRequest) -> Product:
    code = request.GET.get("product") or request.POST.get("product") or Product.Code.AI_AGENTS
    product = Product.objects.filter(code=code).first()
    if product is None:
        raise Http404("No such product.")
    return product


def billing_context(request: TenantRequest, tenant: Tenant, product: Product) -> dict:
    role = request.membership.role
    ents = plan_selectors.entitlements(tenant=tenant)
    current = ents[product.code]
    return {
        "products": Product.objects.order_by("sort_order"),
        "product": product,
        "ent": current,
        # What each plan card offers this member, and the subscription card's own actions: the
        # template picks markup by them and decides nothing about roles or states.
        "offers": plan_offers(tenant=tenant, product=product, role=role, ents=ents),
        "card_actions": subscription_actions(ent=current, role=role),
        "is_admin": role == Role.ADMIN,
        "lead_form": LeadForm(),
        "trial_used": plan_selectors.trial_used(tenant=tenant, product=product),
        # AI Agents: live Sessions count, Trial sessions left, the Session limit card (sessions_billing).
        "usage": usage_for(tenant=tenant) if product.code == Product.Code.AI_AGENTS else None,
        "payment_notices": billing_selectors.payment_notices(tenant=tenant),
    }


@tenant_view(ALL_ROLES)
@require_GET
def billing(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    _billing_enabled()
    if request.GET.get("checkout") == "success" and request.GET.get("session_id"):
        # The return from the hosted checkout: apply that session now rather than wait for the webhook.
        services.checkout_return(tenant=tenant, session_id=request.GET["session_id"])
    return render(request, "billing_portal/billing.html", billing_context(request, tenant, _product(request)))


def _back(tenant: Tenant, product: Product) -> str:
    return reverse("billing", kwargs={"slug": tenant.slug}) + f"?product={product.code}"


def _absolute(request: HttpRequest, path: str) -> str:
    return request.build_absolute_uri(path)


@tenant_view(ADMIN_ONLY)
@require_POST
def subscribe(request: TenantRequest, tenant: Tenant, plan_code: str) -> HttpResponse:
    """Subscribe: open the hosted checkout (the form targets a new tab)."""
    _billing_enabled()
    plan = get_object_or_404(Plan.objects.select_related("product"), code=plan_code, is_public=True)
    back = _back(tenant, plan.product)
    try:
        url = services.checkout_start(
            tenant=tenant,
            plan=plan,
            actor=request.user,
            # Stripe puts the session's id in place of {CHECKOUT_SESSION_ID} (added after the URL is
            # made absolute, which would percent-encode the braces).
            # https://docs.stripe.com/payments/checkout/custom-success-page
            success_url=_absolute(request, back + "&checkout=success") + "&session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_absolute(request, back + "&checkout=canceled"),
        )
    except BusinessError as exc:
        messages.error(request, exc.message)
        return redirect(back)
    return HttpResponseRedirect(url)


@tenant_view(ADMIN_ONLY)
@require_POST
def manage(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Manage: open the gateway's customer portal (payment methods, invoices, cancel)."""
    _billing_enabled()
    product = _product(request)
    try:
        url = services.portal_url(tenant=tenant, return_url=_absolute(request, _back(tenant, product)))
    except BusinessError as exc:
        messages.error(request, exc.message)
        return redirect(_back(tenant, product))
    return HttpResponseRedirect(url)


def _limit_stop(tenant: Tenant, plan: Plan, *, now_applied: bool = False) -> str:
    """An AI Agents plan changed Immediately keeps this period's billable sessions (S21): when they
    already reach the new plan's limit, every agent stops at once (S25): the sentence that says so
    ("" otherwise, or for another product). `now_applied`: the plan has started, its limit applies."""
    if plan.product.code != Product.Code.AI_AGENTS or not plan.is_paid:
        return ""
    usage = usage_for(tenant=tenant)
    new_limit = (
        usage.session_limit
        if now_applied
        else limit_after_change(usage=usage, plan_session_limit=plan.session_limit)
    )
    return limit_stop_warning(usage=usage, new_limit=new_limit)


def _license_overage(tenant: Tenant, plan: Plan) -> str:
    """A Helpdesk AI plan whose totals are below the licenses assigned today keeps them but blocks
    new ones: the sentence that says so before and as the change is made ("" otherwise)."""
    if plan.product.code != Product.Code.HELPDESK_AI:
        return ""
    overages = licensing_selectors.overages_on(
        tenant=tenant, ai_licenses=plan.ai_licenses, chat_licenses=plan.chat_licenses
    )
    return licensing_selectors.overage_warning(plan_name=plan.name, overages=overages)


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def change_plan(request: TenantRequest, tenant: Tenant, plan_code: str) -> HttpResponse:
    """Apply subscription updates: Immediately, End of the current period, or On custom date — the
    choices the plan's offer allows, shown up front."""
    _billing_enabled()
    plan = get_object_or_404(Plan.objects.select_related("product"), code=plan_code, is_public=True)
    form = PlanChangeForm(request.POST if request.method == "POST" else None)
    error = None
    if request.method == "POST" and form.is_valid():
        try:
            result = services.plan_change(
                tenant=tenant,
                to_plan=plan,
                when=form.cleaned_data["when"],
                custom_date=form.effective_custom_date(),
                actor=request.user,
            )
        except BusinessError as exc:
            error = exc.message
        else:
            if result.applied_now:
                messages.success(request, f"You are now on {plan.name}. Your limits are updated.")
                if stopping := _limit_stop(tenant, plan, now_applied=True):
                    messages.warning(request, stopping)
            elif result.pending_until is not None:
                messages.warning(request, result.message)
            else:
                assert result.scheduled is not None
                starts = f"{plan.name} starts on {result.scheduled.effective_at:%-d %b %Y}"
                end = result.subscription.current_period_end
                if form.cleaned_data["when"] == When.CUSTOM_DATE and result.scheduled.effective_at != end:
                    # S18: the switch prorates what is left of the billing period it falls in; on the
                    # renewal's own day it is the renewal itself, which prorates nothing.
                    starts += ": that day the rest of its billing period is prorated and invoiced"
                messages.success(request, f"{starts}.")
            if overage := _license_overage(tenant, plan):
                messages.warning(request, overage)
            return _go(request, _back(tenant, plan.product))
    ents = plan_selectors.entitlements(tenant=tenant)
    offer = plan_offer(tenant=tenant, plan=plan, role=request.membership.role, ents=ents)
    refusal = offer.refused(OfferAction.CHANGE)
    if refusal is not None and error is None:
        error = refusal.message  # said up front, not after the dialog was filled in
    if error is None and form.errors:
        # The dialog's radios are drawn from the offer, not the form: say the form's error where the
        # dialog shows its errors (a missing or unknown `when` was a 422 with no words).
        error = " ".join(str(msg) for msgs in form.errors.values() for msg in msgs)
    if request.method == "GET":
        allowed = [c.value for c in offer.when_choices if c.available]
        form = PlanChangeForm(
            initial={"when": When.PERIOD_END if When.PERIOD_END in allowed else When.IMMEDIATELY}
        )
    context = {
        "plan": plan,
        "form": form,
        "error": error,
        "offer": offer,
        # The dialog's choices and its button only when the card offers a change: a live card of
        # another action (Resume on a canceled current plan) is no change to submit.
        "can_change": refusal is None,
        # S25: what Immediately does to the agents when this period's usage reaches the new limit.
        "limit_stop": _limit_stop(tenant, plan) if refusal is None else "",
        # Licenses beyond the new plan's totals are kept, new ones blocked, whenever it starts.
        "license_overage": _license_overage(tenant, plan) if refusal is None else "",
        "ent": ents[plan.product.code],
        "product": plan.product,
    }
    template = "billing_portal/change_plan.html#dialog" if request.htmx else "billing_portal/change_plan.html"
    # htmx swaps only 2xx answers: the dialog with its error comes back as 200 to htmx, 4xx otherwise.
    status = 200
    if (error or form.errors) and not request.htmx:
        status = refusal.status if refusal is not None else 422
    return render(request, template, context, status=status)


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def cancel_scheduled(request: TenantRequest, tenant: Tenant, change_id: int) -> HttpResponse:
    """Cancel scheduled plan (the Upcoming subscription card's Cancel)."""
    _billing_enabled()
    change = get_object_or_404(
        ScheduledChange.objects.select_related("to_plan__product", "subscription"),
        tenant=tenant,
        pk=change_id,
    )
    back = _back(tenant, change.to_plan.product)
    if request.method == "POST":
        try:
            services.scheduled_change_undo(tenant=tenant, change=change, actor=request.user)
        except BusinessError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"The scheduled change to {change.to_plan.name} is canceled.")
        return redirect(back)
    template = (
        "billing_portal/cancel_scheduled.html#dialog"
        if request.htmx
        else "billing_portal/cancel_scheduled.html"
    )
    return render(request, template, {"change": change, "back": back})


@tenant_view(ADMIN_ONLY)
@require_POST
def cancel_subscription(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Cancel subscription: at the end of the period; a scheduled change is released first."""
    _billing_enabled()
    product = _product(request)
    upcoming = plan_selectors.entitlements(tenant=tenant)[product.code].upcoming
    try:
        sub = services.subscription_cancel(tenant=tenant, product=product, actor=request.user)
    except BusinessError as exc:
        messages.error(request, exc.message)
    else:
        ends = f"{sub.ends_at:%-d %b %Y}" if sub.ends_at else "the end of the period"
        said = f"Your {sub.plan.name} subscription is canceled. It stays active until {ends}."
        if upcoming is not None:
            # The confirmation said so before; the answer says it happened (the schedule is released).
            said += f" The change to {upcoming.plan_name} on {upcoming.starts_on:%-d %b %Y} is canceled too."
        messages.success(request, said)
    return redirect(_back(tenant, product))


@tenant_view(ADMIN_ONLY)
@require_POST
def resume(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Resume: keep a subscription that is canceled at the end of its period."""
    _billing_enabled()
    product = _product(request)
    try:
        sub = services.subscription_resume(tenant=tenant, product=product, actor=request.user)
    except BusinessError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Your {sub.plan.name} subscription is active again and will renew.")
    return redirect(_back(tenant, product))


@tenant_view(ALL_ROLES)
@require_POST
def request_contact(request: TenantRequest, tenant: Tenant, plan_code: str) -> HttpResponse:
    """Book a demo / Speak with Specialist / Register interest: a Lead for sales; "Request received"."""
    plan = get_object_or_404(Plan.objects.select_related("product"), code=plan_code, is_public=True)
    form = LeadForm(request.POST)
    try:
        if not form.is_valid():
            # Refused whole (a message over the limit was stored empty, with "Request received").
            raise BusinessError(
                "invalid_input",
                " ".join(str(msg) for msgs in form.errors.values() for msg in msgs),
                status=422,
            )
        plan_services.lead_create(
            tenant=tenant, user=request.user, plan=plan, message=form.cleaned_data["message"]
        )
    except BusinessError as exc:
        if request.htmx:
            return render(request, "billing_portal/billing.html#plan-refused", {"error": exc.message})
        messages.error(request, exc.message)
        return redirect(_came_from(request, tenant) or _back(tenant, plan.product))
    if request.htmx:
        return render(request, "billing_portal/billing.html#request-received", {"plan": plan})
    messages.success(request, "Request received. Our team will get in touch.")
    return redirect(_came_from(request, tenant) or _back(tenant, plan.product))


def _came_from(request: TenantRequest, tenant: Tenant) -> str:
    """The page a plain form was posted from (its `next` field: the AI Credits page's cards), when it
    is a path of this tenant's pages on this site; "" otherwise (never an open redirect)."""
    return return_path_within(request, request.POST.get("next", ""), f"/t/{tenant.slug}/")


# --- the preview of "Immediately" and the checkout watch ----------------------------------------


@tenant_view(ADMIN_ONLY)
@require_GET
def change_preview(request: TenantRequest, tenant: Tenant, plan_code: str) -> HttpResponse:
    """What "Immediately" charges now (the gateway's invoice preview), for Apply subscription updates;
    with `when=custom_date`, what "On custom date" invoices on `custom_date` and what the next renewal
    bills (S18). A refusal or a gateway failure is a calm "Preview unavailable", never a broken dialog."""
    _billing_enabled()
    plan = get_object_or_404(Plan.objects.select_related("product"), code=plan_code, is_public=True)
    if request.GET.get("when") == When.CUSTOM_DATE:
        return _custom_date_preview(request, tenant, plan)
    preview, unavailable = None, ""
    try:
        preview = services.plan_change_preview(tenant=tenant, to_plan=plan, actor=request.user)
    except BusinessError as exc:
        unavailable = exc.message
    context = {"plan": plan, "product": plan.product, "preview": preview, "unavailable": unavailable}
    template = (
        "billing_portal/change_preview.html#preview" if request.htmx else "billing_portal/change_preview.html"
    )
    return render(request, template, context)


def _custom_date_preview(request: TenantRequest, tenant: Tenant, plan: Plan) -> HttpResponse:
    """The dialog's words for the date picked (fetched when it changes), or, without JavaScript, a
    page with a date to pick: what is prorated and invoiced on it, and what the next renewal bills."""
    form = PlanChangeForm({"when": When.CUSTOM_DATE, "custom_date": request.GET.get("custom_date", "")})
    outlook, unavailable = None, ""
    if "custom_date" not in request.GET:
        pass  # the page's first view, no date picked yet
    elif not form.is_valid():
        unavailable = " ".join(str(msg) for msgs in form.errors.values() for msg in msgs)
    else:
        try:
            outlook = services.plan_change_custom_date_outlook(
                tenant=tenant, to_plan=plan, custom_date=form.effective_custom_date(), actor=request.user
            )
        except BusinessError as exc:
            unavailable = exc.message
    context = {
        "plan": plan,
        "product": plan.product,
        "outlook": outlook,
        "unavailable": unavailable,
        "form": form,
    }
    template = "billing_portal/change_preview_custom_date.html"
    template += "#custom-date" if request.htmx else ""
    return render(request, template, context)


# Unix seconds the watch accepts as "the page was rendered at": from 2020 to 2100.
_SINCE_RANGE = range(1_577_836_800, 4_102_444_800)


def _since(value: str) -> datetime:
    seconds = int(value) if value.isascii() and value.isdigit() and len(value) <= 12 else -1
    if seconds not in _SINCE_RANGE:
        return timezone.now()
    return datetime.fromtimestamp(seconds, tz=UTC)


@tenant_view(ADMIN_ONLY)
@require_GET
def checkout_status(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """The Billing tab that opened a checkout in a new tab asks this every few seconds (S15): a note
    while the payment is pending, the updated page once it is paid, a calm word if it was canceled."""
    _billing_enabled()
    product = _product(request)
    state = billing_selectors.checkout_watch(
        tenant=tenant, product=product, since=_since(request.GET.get("since", ""))
    )
    back = _back(tenant, product)
    if state == billing_selectors.CheckoutWatch.PAID:
        if not request.htmx:
            return redirect(back)
        # htmx fetches the Billing page and swaps its content in: the card now shows the paid plan.
        location = {"path": back, "target": "#billing-page", "select": "#billing-page", "swap": "outerHTML"}
        return HttpResponse(headers={"HX-Location": json.dumps(location)})
    polling = state in (billing_selectors.CheckoutWatch.WAITING, billing_selectors.CheckoutWatch.ACTIVATING)
    context = {"state": state, "polling": polling, "status_url": request.get_full_path(), "back": back}
    return render(request, "billing_portal/checkout_watch.html", context)


# --- webhook -------------------------------------------------------------------------------------


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    """Verify (signature and timestamp tolerance), store by event id, apply after commit.
    A bad signature or an unusable event is a 400 and stores nothing; a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE is a 413 in the same JSON shape (Stripe's events are far smaller)."""
    try:
        payload = request.body
    except RequestDataTooBig:
        return error_response(*http_error(413), status=413)
    try:
        received = webhooks.webhook_receive(
            payload=payload,
            signature=request.headers.get("Stripe-Signature", ""),
            enqueue=tasks.process_webhook_event.delay,
        )
    except WebhookSignatureError as exc:
        return error_response("bad_signature", str(exc), status=400)
    except WebhookRejected as exc:
        return error_response("bad_event", str(exc), status=400)
    row = received.event
    return JsonResponse({"received": True, "duplicate": not received.created, "status": row.status})


# --- AI Credits purchases, confirmed with the security code (C09 to C15) --------------------------


def _ai_credits_page(tenant: Tenant) -> str:
    return reverse("ai_credits", kwargs={"slug": tenant.slug})


def _go(request: TenantRequest, url: str) -> HttpResponse:
    """Leave the dialog for `url` (htmx: the whole window; a plain form: a redirect)."""
    if request.htmx:
        return HttpResponseClientRedirect(url)
    return HttpResponseRedirect(url)


def _purchase_dialog(
    request: TenantRequest, context: dict, *, error: BusinessError | None = None
) -> HttpResponse:
    context = {
        **context,
        "error": error.message if error else "",
        "dev_mailbox": settings.DEBUG,
        "email": request.user.email,
        "back": _ai_credits_page(request.tenant),
    }
    template = "billing_portal/ai_purchase.html#dialog" if request.htmx else "billing_portal/ai_purchase.html"
    # htmx swaps only 2xx answers: a refusal comes back as 200 to htmx, with its status otherwise.
    status = error.status if error is not None and not request.htmx else 200
    return render(request, template, context, status=status)


def _purchase_outcome(request: TenantRequest, outcome: services.PurchaseOutcome) -> HttpResponse:
    if outcome.status == "done":
        messages.success(request, outcome.message)
        return _go(request, _ai_credits_page(request.tenant))
    messages.info(request, outcome.message)
    return _go(request, outcome.url or _ai_credits_page(request.tenant))


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def ai_subscribe(request: TenantRequest, tenant: Tenant, plan_code: str) -> HttpResponse:
    """Subscribe Now's confirmation dialog (C09, C10): email a security code, then confirm with it."""
    # The AI Credits page's dialog buys AI Credits plans only (other products have their Billing tab).
    plan = get_object_or_404(
        Plan.objects.select_related("product"),
        code=plan_code,
        is_public=True,
        product__code=Product.Code.AI_CREDITS,
    )
    # Before the code is confirmed: the credits of the plan this one replaces (AI Free) that end.
    ending = credit_selectors.plan_credits_ending(tenant=tenant, plan=plan)
    context: dict = {
        "kind": "subscribe",
        "plan": plan,
        "step": "start",
        "ending": ending.notice(plan.name) if ending else "",
    }
    offer = plan_offer(tenant=tenant, plan=plan, role=request.membership.role)
    refusal = offer.refused(OfferAction.SUBSCRIBE)
    if refusal is not None:
        return _purchase_dialog(request, {**context, "refused": True}, error=refusal.error())
    if request.method == "GET":
        return _purchase_dialog(request, context)
    purpose = services.subscribe_purpose(plan)
    try:
        if request.POST.get("action") == "send":
            security_codes.security_code_send(
                user=request.user, tenant=tenant, purpose=purpose, action=f"subscribe to {plan.name}"
            )
            return _purchase_dialog(request, {**context, "step": "code", "sent": True})
        # Without a saved card: the hosted checkout, back to the Billing tab, which applies it on return.
        back = _back(tenant, plan.product)
        outcome = services.subscribe_now(
            tenant=tenant,
            plan=plan,
            actor=request.user,
            code=request.POST.get("code", ""),
            success_url=_absolute(request, back + "&checkout=success") + "&session_id={CHECKOUT_SESSION_ID}",
            cancel_url=_absolute(request, back + "&checkout=canceled"),
        )
    except BusinessError as exc:
        return _purchase_refused(request, context, exc)
    return _purchase_outcome(request, outcome)


# Refusals that send the purchase dialog back to its first step (ask for a code); any other one
# leaves it at the code's step. A payment refused by the gateway (402 a card error, 502 the gateway)
# comes after the code was accepted, and spent: a new one is needed.
_BACK_TO_START = frozenset({"security_code_missing", "security_code_not_sent"})
_PAYMENT_REFUSED = frozenset({402, 502})


def _purchase_refused(request: TenantRequest, context: dict, exc: BusinessError) -> HttpResponse:
    """A refused code request or confirmation: the dialog again, with the error, at its step."""
    step = "start" if exc.code in _BACK_TO_START or exc.status in _PAYMENT_REFUSED else "code"
    return _purchase_dialog(request, {**context, "step": step}, error=exc)


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def ai_extra_pack(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Buy extra credits (C12 to C15, C17, C24): choose a pack, email a security code, confirm."""
    packs = credit_selectors.extra_packs_on_sale()
    chosen = next((p for p in packs if p.code == request.POST.get("pack", request.GET.get("pack", ""))), None)
    context: dict = {"kind": "extra_pack", "packs": packs, "chosen": chosen or (packs[0] if packs else None)}
    context["step"] = "start"
    pack_offer = credit_selectors.pack_offer(tenant=tenant, role=request.membership.role)
    if pack_offer.refusal is not None:
        return _purchase_dialog(request, {**context, "refused": True}, error=pack_offer.refusal.error())
    if request.method == "GET":
        return _purchase_dialog(request, context)
    if chosen is None:
        error = BusinessError("extra_pack_not_on_sale", services.MSG_PACK_NOT_ON_SALE, status=422)
        return _purchase_dialog(request, context, error=error)
    purpose = services.extra_pack_purpose(chosen)
    try:
        if request.POST.get("action") == "send":
            security_codes.security_code_send(
                user=request.user, tenant=tenant, purpose=purpose, action=f"buy {chosen.name}"
            )
            return _purchase_dialog(request, {**context, "step": "code", "sent": True})
        outcome = services.extra_pack_buy(
            tenant=tenant, pack=chosen, actor=request.user, code=request.POST.get("code", "")
        )
    except BusinessError as exc:
        return _purchase_refused(request, context, exc)
    return _purchase_outcome(request, outcome)
