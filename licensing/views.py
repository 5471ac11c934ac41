"""The Plans & Licenses page (L01 to L22) and its actions. Thin views: access check → form → one
service or selectors → render. Every action works as a plain form too; with htmx it answers the
row it changed and the header, flags and messages out of band, so the totals change at once
without a reload (L14). Members and finance see the page read-only; only admins act."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpResponse, QueryDict, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import pluralize
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from licensing import selectors, services
from licensing.forms import AssignForm, ClientFilterForm, ClientForm, ImportForm
from licensing.models import Client, ClientImport, LicenseKind
from licensing.rules import KIND_LABEL, PRODUCT, add_refusals, assign_refusal
from plans.models import Product
from plans.offers import plan_offers
from plans.selectors import Entitlements, ProductEntitlement, entitlements
from tenants.access import ADMIN_ONLY, ALL_ROLES, TenantRequest, return_path_within, tenant_view
from tenants.csv_export import csv_response
from tenants.errors import BusinessError
from tenants.models import Role, Tenant
from tenants.text import ascii_digits

PAGE_SIZE = 50
PAGE = "licensing/plans_and_licenses.html"


def _page_url(tenant: Tenant, query: str = "") -> str:
    url = reverse("plans_and_licenses", kwargs={"slug": tenant.slug})
    return f"{url}?{query}" if query else url


def _back(request: TenantRequest, tenant: Tenant) -> str:
    """Where a plain form returns: the page with the filters the admin had (`next`), else the page."""
    target = request.POST.get("next", "") or request.GET.get("next", "")
    page = _page_url(tenant)
    return return_path_within(request, target, page) or page


def _filters(
    request: TenantRequest, tenant: Tenant, data: Any
) -> tuple[ClientFilterForm, selectors.ClientFilters]:
    companies, agreements = selectors.type_choices(tenant=tenant)
    form = ClientFilterForm(data or None, companies=companies, agreements=agreements)
    return form, form.filters()


def _query(data: Any, *drop: str) -> str:
    query = data.copy()
    for name in drop:
        query.pop(name, None)
    query.pop("csrfmiddlewaretoken", None)
    return query.urlencode()


def _sort_links(filters: selectors.ClientFilters, query: str) -> dict[str, dict[str, str]]:
    """Per sortable column: the URL query that sorts by it (again: the other way round), and the
    arrow to show on the column sorted now."""
    base = {k: v for k, v in _parse(query).items() if k not in ("sort", "page")}
    links = {}
    for key in selectors.SORTS:
        current = filters.sort_key == key
        sort = f"-{key}" if current and not filters.descending else key
        links[key] = {
            "query": urlencode({**base, "sort": sort}),
            "arrow": ("▼" if filters.descending else "▲") if current else "",
            "aria": ("descending" if filters.descending else "ascending") if current else "none",
        }
    return links


def _parse(query: str) -> dict[str, str]:
    return dict(parse_qsl(query, keep_blank_values=False))


_MARK = 987654321  # a client pk in a reversed URL, replaced by each row's own


def _with_links(tenant: Tenant, clients: list[Client], here: str) -> None:
    """Each row's action URLs (`client.links`: ai, chat, edit with `next`), from one reverse each
    for the page instead of one per row and action (those were a tenth of the page's time)."""
    mark = str(_MARK)
    bases = {
        "ai": reverse("license_change", args=[tenant.slug, _MARK, LicenseKind.AI]),
        "chat": reverse("license_change", args=[tenant.slug, _MARK, LicenseKind.CHAT]),
        "edit": reverse("client_edit", args=[tenant.slug, _MARK]),
    }
    # The pk is the last place the mark stands in the path (a slug may hold the same digits, never
    # after it); the query comes after.
    parts = {name: url.rpartition(mark) for name, url in bases.items()}
    after = {"ai": "", "chat": "", "edit": "?next=" + quote(here, safe="/")}
    for client in clients:
        pk = str(client.pk)
        client.links = {name: f"{head}{pk}{tail}{after[name]}" for name, (head, _, tail) in parts.items()}  # type: ignore[attr-defined]


def _table_context(
    request: TenantRequest,
    tenant: Tenant,
    ents: Entitlements,
    data: Any,
    top: selectors.Header | None = None,
) -> dict[str, Any]:
    """The Manage Licenses table; `top`, the header when the caller has read it (its license
    counts decide the rows' Add items, which are otherwise counted here)."""
    form, filters = _filters(request, tenant, data)
    found = selectors.clients_page(
        tenant=tenant, filters=filters, number=data.get("page"), size=PAGE_SIZE, ent=ents[PRODUCT]
    )
    query = _query(data, "page", "next")
    here = _page_url(tenant, _query(data, "next"))
    _with_links(tenant, found.rows, here)
    return {
        "form": form,
        "filters": filters,
        "clients": found,
        "query": query,
        "sort_links": _sort_links(filters, query),
        "here": here,
        "is_admin": request.membership.role == Role.ADMIN,
        # L12: without a plan that admits new licenses, a row's Add items say why instead of posting.
        "assign_refusal": assign_refusal(ents[PRODUCT]),
        **_add_context(tenant, ents[PRODUCT], top),
    }


def _add_context(tenant: Tenant, ent: ProductEntitlement, top: selectors.Header | None) -> dict[str, Any]:
    """L04, L12: a row's Add AI license / Add Chat license, disabled with the reason when the click
    would be refused on any client (no plan, or every license of that kind assigned)."""
    used = (
        {LicenseKind.AI.value: top.ai.used, LicenseKind.CHAT.value: top.chat.used}
        if top is not None
        else selectors.licenses_used(tenant=tenant)
    )
    return {"add_refusal": add_refusals(ent, ai_used=used["ai"], chat_used=used["chat"])}


def _header_context(request: TenantRequest, tenant: Tenant, ents: Entitlements) -> dict[str, Any]:
    top = selectors.header(tenant=tenant, ents=ents)
    offers = []
    if top.near_limits or top.overages or not top.subscribed:
        product = Product.objects.get(code=PRODUCT)
        offers = plan_offers(tenant=tenant, product=product, role=request.membership.role, ents=ents)
    current = next((o for o in offers if o.is_current), None)
    rank = current.plan.rank if current is not None else -1
    return {
        "top": top,
        "ent": top.ent,
        **_assign_context(tenant, top.ent),
        **_add_context(tenant, top.ent, top),
        "offers": offers,
        # L22: the bigger plans, as their cards offer them to this member (plans.offers decides).
        "upgrades": [o for o in offers if o.plan.rank > rank and (o.label or o.reason)],
        # The downgrade's overage ahead of time: a scheduled change that will leave licenses beyond its totals.
        "coming_overage": selectors.upcoming_overage_warning(tenant=tenant, top=top),
        "is_admin": request.membership.role == Role.ADMIN,
    }


def _assign_context(tenant: Tenant, ent: ProductEntitlement) -> dict[str, Any]:
    """Why Assign AI license would be refused whatever is picked (no Helpdesk AI plan, or one that
    admits no new work), and where the plans are: the Helpdesk AI Billing tab, or this page's cards
    where the deployment has no Billing tab (S03)."""
    if settings.BILLING_TAB_ENABLED:
        plans_url = reverse("billing", kwargs={"slug": tenant.slug}) + f"?product={PRODUCT}"
    else:
        plans_url = _page_url(tenant) + "#license-header"
    return {"assign_refusal": assign_refusal(ent), "plans_url": plans_url}


@tenant_view(ALL_ROLES)
@require_GET
def plans_and_licenses(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Plans & Licenses (L01): the header (L02 to L06), the inactive clients that hold licenses
    (L20), the upgrade prompt (L22) and the Manage Licenses table (L07 to L13). The filter bar asks
    htmx for the table alone; the URL keeps the filters."""
    ents = entitlements(tenant=tenant)
    if request.htmx and request.htmx.target == "clients":
        return render(request, f"{PAGE}#table", _table_context(request, tenant, ents, request.GET))
    header = _header_context(request, tenant, ents)
    context = _table_context(request, tenant, ents, request.GET, top=header["top"]) | header
    return render(request, PAGE, context)


@tenant_view(ALL_ROLES)
@require_GET
def licenses_csv(request: TenantRequest, tenant: Tenant) -> StreamingHttpResponse:
    """The table as CSV, filtered and sorted as on the page, every page (streamed)."""
    _form, filters = _filters(request, tenant, request.GET)
    rows = selectors.export_rows(tenant=tenant, filters=filters, ent=entitlements(tenant=tenant)[PRODUCT])
    return csv_response(rows, filename=f"licenses-{tenant.slug}-{timezone.now().date().isoformat()}.csv")


# --- license actions -------------------------------------------------------------------------------


def _client(tenant: Tenant, client_pk: int) -> Client:
    client = Client.objects.filter(tenant=tenant, pk=client_pk).first()
    if client is None:
        raise Http404("No such client.")
    return client


def _changed(
    request: TenantRequest, tenant: Tenant, *, row: Client | None = None, table: bool = False
) -> HttpResponse:
    """After an htmx action: the changed row (or the table, with the filters the admin had), with
    the header, the flags and the messages swapped out of band (L14: the totals change at once)."""
    ents = entitlements(tenant=tenant)
    context = _header_context(request, tenant, ents) | {"oob": True}
    parts = []
    if row is not None:
        period = selectors.usage_period(ents[PRODUCT], timezone.now())
        found = selectors.client_row(tenant=tenant, pk=row.pk, period=period)
        here = _back(request, tenant)
        if found is not None:
            _with_links(tenant, [found], here)
        context |= {"client": found, "here": here}
        # A row stands on its own only inside a template element (htmx swaps it out of band).
        parts.append(f"<template>{render_to_string(f'{PAGE}#row', context, request=request)}</template>")
    if table:
        saved = QueryDict(_back(request, tenant).partition("?")[2])
        context |= _table_context(request, tenant, ents, saved, top=context["top"])
        parts.append(render_to_string(f"{PAGE}#table", context, request=request))
    parts.append(render_to_string(f"{PAGE}#header", context, request=request))
    parts.append(render_to_string(f"{PAGE}#flags", context, request=request))
    parts.append(render_to_string("components/messages.html", {"oob": True}, request=request))
    return HttpResponse("".join(parts))


MSG_ADDED = "{client} now has {article} {kind} license."
MSG_REMOVED = "The {kind} license of {client} is removed."


@tenant_view(ADMIN_ONLY)
@require_POST
def license_change(request: TenantRequest, tenant: Tenant, client_pk: int, kind: str) -> HttpResponse:
    """Add / Remove AI license, Add / Remove Chat license (L13, L14), from a row's actions menu."""
    if kind not in LicenseKind.values:
        raise Http404("No such license.")
    client = _client(tenant, client_pk)
    label = KIND_LABEL[LicenseKind(kind)]
    try:
        if request.POST.get("action") == "remove":
            client = services.license_remove(tenant=tenant, client=client, kind=kind, actor=request.user)
            messages.success(request, MSG_REMOVED.format(kind=label, client=client.name))
        else:
            client = services.license_assign(tenant=tenant, client=client, kind=kind, actor=request.user)
            article = "an" if kind == LicenseKind.AI else "a"
            messages.success(request, MSG_ADDED.format(client=client.name, article=article, kind=label))
    except BusinessError as exc:
        messages.error(request, exc.message)
    if request.htmx:
        return _changed(request, tenant, row=client)
    return redirect(_back(request, tenant))


@tenant_view(ADMIN_ONLY)
@require_POST
def release_inactive(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """L20's one click: the licenses of every inactive client are removed."""
    removed = services.licenses_release_inactive(tenant=tenant, actor=request.user)
    if removed:
        messages.success(
            request, f"{removed} license{'s' if removed != 1 else ''} removed from inactive clients."
        )
    else:
        messages.info(request, "No inactive client holds a license.")
    if request.htmx:
        return _changed(request, tenant, table=True)
    return redirect(_back(request, tenant))


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def assign(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """The "Assign AI license" picker (L12): search the active clients without an AI license and
    pick one or several; every one gets it, or none does (with how many are left)."""
    kind = LicenseKind.AI
    q = (request.GET.get("q") or request.POST.get("q") or "").strip()[:200]
    form = AssignForm(request.POST if request.method == "POST" else None)
    error, status = None, 200
    if request.method == "POST" and form.is_valid():
        try:
            chosen = services.licenses_assign(
                tenant=tenant, client_ids=form.cleaned_data["clients"], kind=kind, actor=request.user
            )
        except BusinessError as exc:
            error, status = exc.message, exc.status
        else:
            names = ", ".join(c.name for c in chosen[:5]) + (
                f" and {len(chosen) - 5} more" if len(chosen) > 5 else ""
            )
            messages.success(request, f"AI license assigned to {names}.")
            if request.htmx:
                return _changed(request, tenant, table=True)
            return redirect(_back(request, tenant))
    elif request.method == "POST":
        error, status = str(form.errors["clients"][0]), 422
    # Clients already ticked stay ticked while the search changes (the search sends them along),
    # and after a refusal (the form sent them).
    sent = request.POST if request.method == "POST" else request.GET
    kept = [int(v) for v in sent.getlist("clients") if ascii_digits(v) and len(v) < 19][:200]
    top = selectors.header(tenant=tenant)
    picked = selectors.pick_candidates(tenant=tenant, kind=kind, ids=kept) if kept else []
    found = selectors.pick_candidates(tenant=tenant, q=q, kind=kind)
    context = {
        "picked": picked,
        "candidates": [c for c in found if c.pk not in set(kept)],
        "q": q,
        "error": error,
        "here": _back(request, tenant),
        "top": top,
        **_assign_context(tenant, top.ent),
        **_add_context(tenant, top.ent, top),
    }
    if not context["assign_refusal"] and context["add_refusal"][kind.value]:
        # Every AI license is assigned: nothing to pick; the rows' disabled Add says the same (L12, L13).
        context["assign_refusal"] = context["add_refusal"][kind.value]
    if request.htmx and request.htmx.target == "assign-candidates":
        return render(request, "licensing/assign.html#candidates", context)
    if request.htmx:
        # htmx swaps only 2xx answers: the dialog with its error comes back as 200 to htmx.
        return render(request, "licensing/assign.html#dialog", context)
    return render(request, "licensing/assign.html", context, status=status)


# --- clients -----------------------------------------------------------------------------------------


def _client_form(
    request: TenantRequest, tenant: Tenant, form: ClientForm, client: Client | None
) -> HttpResponse:
    context = {"form": form, "client": client, "here": _back(request, tenant)}
    if request.htmx and request.method == "GET":
        return render(request, "licensing/client_form.html#dialog", context)
    return render(request, "licensing/client_form.html", context, status=422 if form.errors else 200)


def _done(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    back = _back(request, tenant)
    return HttpResponseClientRedirect(back) if request.htmx else redirect(back)


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def client_new(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Add client (admins)."""
    form = ClientForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        fields = form.fields_or_errors()
        if fields is not None:
            try:
                client = services.client_create(
                    tenant=tenant,
                    external_id=form.cleaned_data["external_id"],
                    fields=fields,
                    actor=request.user,
                )
            except BusinessError as exc:
                form.add_error("external_id", exc.message)
            else:
                messages.success(request, f"{client.name} is added.")
                return _done(request, tenant)
    return _client_form(request, tenant, form, None)


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def client_edit(request: TenantRequest, tenant: Tenant, client_pk: int) -> HttpResponse:
    """Edit client (admins): name, status, company type, agreement type."""
    client = _client(tenant, client_pk)
    initial = {f: getattr(client, f) for f in services.FIELDS}
    form = ClientForm(request.POST or None, initial=initial, editing=True)
    if request.method == "POST" and form.is_valid():
        fields = form.fields_or_errors()
        if fields is not None:
            services.client_update(tenant=tenant, client=client, fields=fields, actor=request.user)
            messages.success(request, f"{fields.name} is saved.")
            return _done(request, tenant)
    return _client_form(request, tenant, form, client)


# --- CSV imports -------------------------------------------------------------------------------------


@tenant_view(ADMIN_ONLY)
@require_http_methods(["GET", "POST"])
def import_new(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Import clients from CSV: upload, then check (the next page shows the result)."""
    form = ImportForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        filename, text = form.cleaned_data["file"]
        found = services.client_import_create(
            tenant=tenant, filename=filename, content=text, actor=request.user
        )
        if found.total <= services.IMPORT_INLINE_ROWS:
            services.client_import_check(import_id=found.pk)
        return redirect("client_import", slug=tenant.slug, import_id=found.pk)
    recent = ClientImport.objects.filter(tenant=tenant).order_by("-created_at")[:5]
    return render(
        request, "licensing/import.html", {"form": form, "recent": recent}, status=422 if form.errors else 200
    )


def _import(tenant: Tenant, import_id: int) -> ClientImport:
    found = ClientImport.objects.filter(tenant=tenant, pk=import_id).defer("content").first()
    if found is None:
        raise Http404("No such import.")
    return found


@tenant_view(ADMIN_ONLY)
@require_GET
def client_import(request: TenantRequest, tenant: Tenant, import_id: int) -> HttpResponse:
    """The check's result (new, changed, unchanged; each bad row with its line number) and the
    Import button; while a task works on a large file, its progress (htmx polls the status)."""
    found = _import(tenant, import_id)
    if request.htmx:
        return render(request, "licensing/import_detail.html#status", {"imp": found})
    return render(request, "licensing/import_detail.html", {"imp": found})


@tenant_view(ADMIN_ONLY)
@require_POST
def client_import_apply(request: TenantRequest, tenant: Tenant, import_id: int) -> HttpResponse:
    found = _import(tenant, import_id)
    try:
        found = services.client_import_start(tenant=tenant, import_id=found.pk, actor=request.user)
    except BusinessError as exc:
        messages.error(request, exc.message)
    else:
        if found.status == ClientImport.Status.APPLIED:
            messages.success(
                request,
                f"Imported: {found.new} new client{pluralize(found.new)}, {found.updated} changed, "
                f"{found.unchanged} unchanged.",
            )
    return redirect("client_import", slug=tenant.slug, import_id=found.pk)
