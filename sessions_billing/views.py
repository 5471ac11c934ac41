"""The Sessions and Agents screens and the Session limit card's actions. Thin views: access
check → form → one service or selectors → render."""

from __future__ import annotations

from collections.abc import Iterator

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from sessions_billing import selectors, services
from sessions_billing.forms import AgentForm, SessionFilterForm, SessionLimitForm
from sessions_billing.models import Conversation
from tenants.access import ADMIN_ONLY, ALL_ROLES, TenantRequest, tenant_view
from tenants.csv_export import csv_response
from tenants.errors import BusinessError
from tenants.models import Role, Tenant

PAGE_SIZE = 50


def _filters(request: HttpRequest, tenant: Tenant) -> tuple[SessionFilterForm, selectors.SessionFilters]:
    form = SessionFilterForm(request.GET or None, agents=selectors.agent_keys(tenant=tenant))
    return form, form.filters()


def _query(request: HttpRequest, *drop: str) -> str:
    query = request.GET.copy()
    for name in drop:
        query.pop(name, None)
    return query.urlencode()


@tenant_view(ALL_ROLES)
@require_GET
def sessions(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Sessions (S04, S35): the conversations behind the usage, filtered in the URL, with this
    period's billable sessions per day against the limit."""
    form, filters = _filters(request, tenant)
    page = selectors.conversations_page(
        tenant=tenant,
        filters=filters,
        before=request.GET.get("before", "")[:60],
        after=request.GET.get("after", "")[:60],
        size=PAGE_SIZE,
    )
    context = {
        "form": form,
        "filtered": filters.active,
        "page": page,
        "query": _query(request, "before", "after"),
    }
    if request.htmx:
        return render(request, "sessions_billing/sessions.html#table", context)
    usage = selectors.usage_for(tenant=tenant)
    context |= {"usage": usage, "chart": selectors.daily_usage(tenant=tenant, usage=usage)}
    return render(request, "sessions_billing/sessions.html", context)


CSV_HEADER = (
    "conversation_id",
    "agent",
    "direction",
    "started_at",
    "last_activity_at",
    "ended_at",
    "answered",
    "billable_sessions",
)


def _csv_rows(found: Iterator[Conversation]) -> Iterator[tuple[object, ...]]:
    yield CSV_HEADER
    for c in found:
        yield (
            c.conversation_id,
            c.agent.key if c.agent else "",
            c.direction,
            c.started_at.isoformat(),
            c.last_activity_at.isoformat(),
            c.ended_at.isoformat() if c.ended_at else "",
            "yes" if c.answered else "no",
            c.billable_sessions,
        )


@tenant_view(ALL_ROLES)
@require_GET
def sessions_csv(request: TenantRequest, tenant: Tenant) -> StreamingHttpResponse:
    """The filtered sessions as CSV (all pages), streamed."""
    _form, filters = _filters(request, tenant)
    filename = f"sessions-{tenant.slug}-{timezone.now().date().isoformat()}.csv"
    return csv_response(
        _csv_rows(selectors.conversations_export(tenant=tenant, filters=filters)), filename=filename
    )


def _agents_context(request: TenantRequest, tenant: Tenant, form: AgentForm | None = None) -> dict:
    usage = selectors.usage_for(tenant=tenant)
    return {
        "usage": usage,
        "rows": selectors.agents_with_usage(tenant=tenant, usage=usage),
        "form": form or AgentForm(),
        "is_admin": request.membership.role == Role.ADMIN,
    }


@tenant_view(ALL_ROLES)
@require_GET
def agents(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Agents (S32, S35): each agent's sessions this period and whether it accepts new sessions now,
    and if not why, with the advice of "Common issues"."""
    return render(request, "sessions_billing/agents.html", _agents_context(request, tenant))


@tenant_view(ADMIN_ONLY)
@require_POST
def agent_register(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    form = AgentForm(request.POST)
    if form.is_valid():
        try:
            agent = services.agent_register(
                tenant=tenant,
                key=form.cleaned_data["key"],
                name=form.cleaned_data["name"],
                actor=request.user,
            )
        except BusinessError as exc:
            form.add_error("key", exc.message)
        else:
            messages.success(request, f"{agent.label} is registered.")
            return redirect("agents", slug=tenant.slug)
    return render(request, "sessions_billing/agents.html", _agents_context(request, tenant, form), status=422)


# --- the Session limit card (on the Billing tab) ---------------------------------------------------


def _card(
    request: TenantRequest, tenant: Tenant, form: SessionLimitForm | None = None, status: int = 200
) -> HttpResponse:
    """The Session limit card and, out of band, the subscription card's Sessions count: both say
    the limit the card has just set (S06, S23)."""
    context = {
        "usage": selectors.usage_for(tenant=tenant),
        "limit_form": form or SessionLimitForm(),
        "is_admin": True,
        "tenant": tenant,
    }
    card = render_to_string("sessions_billing/limit_card.html", context, request=request)
    facts = render_to_string("sessions_billing/usage_facts.html", context | {"oob": True}, request=request)
    # The messages out of band too: a limit that stops every agent says so at once (S25).
    flashes = render_to_string("components/messages.html", {"oob": True}, request=request)
    return HttpResponse(card + facts + flashes, status=status)


def _back(tenant: Tenant) -> str:
    return reverse("billing", kwargs={"slug": tenant.slug}) + "?product=ai_agents"


@tenant_view(ADMIN_ONLY)
@require_POST
def session_limit(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Set limit / Reset limit (S23). htmx swaps the card; a plain form comes back to the Billing tab."""
    form = SessionLimitForm(request.POST) if request.POST.get("action") != "reset" else None
    error = None
    warning = ""
    try:
        if form is None:
            services.session_limit_reset(tenant=tenant, actor=request.user)
            done = "The session limit is back to your plan's base limit."
        elif form.is_valid():
            value = form.cleaned_data["session_limit"]
            services.session_limit_set(tenant=tenant, session_limit=value, actor=request.user)
            done = f"The session limit is now {value:,} billable sessions per period."
        else:
            done = ""
    except BusinessError as exc:
        error = exc.message
        done = ""
    if form is not None and error:
        form.add_error("session_limit", error)
    if done:
        # S25: a limit at or below this period's usage stops every agent at once: say so as it applies.
        usage = selectors.usage_for(tenant=tenant)
        warning = selectors.limit_stop_warning(usage=usage, new_limit=usage.session_limit)
    if request.htmx:
        if done:
            messages.success(request, done)
            if warning:
                messages.warning(request, warning)
        status = 200  # htmx swaps only 2xx answers: the card with its error comes back as 200
        return _card(request, tenant, form if (form is not None and form.errors) else None, status)
    if done:
        messages.success(request, done)
        if warning:
            messages.warning(request, warning)
    elif error or (form is not None and form.errors):
        errors = form.errors.get("session_limit") if form is not None else None
        messages.error(request, error or (str(errors[0]) if errors else "Check the session limit."))
    return redirect(_back(tenant))
