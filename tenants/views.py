"""Account and tenant pages: sign-up, home, team, invitations, API keys, activity.

Thin views: access check → form → one service → render. Business refusals come back as
BusinessError and are shown where the user acted."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.paginator import Paginator
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from tenants import dashboard, dev_mailbox, selectors, services
from tenants.access import ADMIN_ONLY, TenantRequest, tenant_view
from tenants.errors import BusinessError
from tenants.forms import (
    AcceptInvitationForm,
    ActivityFilterForm,
    ApiKeyForm,
    InviteForm,
    RoleForm,
)
from tenants.models import ApiKey, Invitation, Membership, Tenant


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok", content_type="text/plain")


def home(request: HttpRequest) -> HttpResponse:
    """Signed in: the last tenant used, or the first one; otherwise the login page."""
    if not request.user.is_authenticated:
        return redirect("login")
    memberships = list(selectors.memberships_of(user=request.user))
    if not memberships:
        return render(request, "tenants/no_tenant.html")
    last = request.session.get("last_tenant")
    chosen = next((m for m in memberships if m.tenant.slug == last), memberships[0])
    return redirect("tenant_home", slug=chosen.tenant.slug)


@tenant_view()
@require_GET
def tenant_home(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """The Overview: the tiles every app registers (tenants.dashboard), alerts first."""
    return render(request, "tenants/home.html", {"tiles": dashboard.tiles_for(request)})


# --- team ----------------------------------------------------------------------------------


def _team_context(tenant: Tenant, invite_form: InviteForm | None = None) -> dict:
    return {
        "members": selectors.members_of(tenant=tenant),
        "invitations": selectors.pending_invitations(tenant=tenant),
        "admin_count": selectors.admin_count(tenant=tenant),
        "invite_form": invite_form or InviteForm(),
    }


@tenant_view(ADMIN_ONLY)
@require_GET
def team(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    return render(request, "tenants/team.html", _team_context(tenant))


@tenant_view(ADMIN_ONLY)
@require_POST
def invitation_create(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            services.invitation_create(
                tenant=tenant,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=request.user,
            )
        except BusinessError as exc:
            form.add_error("email", exc.message)
        else:
            messages.success(request, f"Invitation sent to {form.cleaned_data['email']}.")
            form = InviteForm()
    if request.htmx:
        return render(request, "tenants/team.html#team", _team_context(tenant, form))
    if form.errors:
        return render(request, "tenants/team.html", _team_context(tenant, form), status=400)
    return redirect("team", slug=tenant.slug)


@tenant_view(ADMIN_ONLY)
@require_POST
def invitation_revoke(request: TenantRequest, tenant: Tenant, invitation_id: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, tenant=tenant, pk=invitation_id)
    if services.invitation_revoke(tenant=tenant, invitation=invitation, actor=request.user):
        messages.success(request, f"Invitation to {invitation.email} withdrawn.")
    else:
        messages.error(request, f"The invitation to {invitation.email} was no longer pending.")
    return _back_to_team(request, tenant)


@tenant_view(ADMIN_ONLY)
@require_POST
def member_change_role(request: TenantRequest, tenant: Tenant, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), tenant=tenant, pk=membership_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: admin, member or finance.")
    else:
        try:
            services.membership_change_role(
                tenant=tenant, membership=membership, role=form.cleaned_data["role"], actor=request.user
            )
        except BusinessError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{membership.user.email} is now {form.cleaned_data['role']}.")
    if (
        membership.user_id == request.user.pk
        and not Membership.objects.filter(pk=membership.pk, role="admin").exists()
    ):
        return _redirect(request, reverse("tenant_home", kwargs={"slug": tenant.slug}))
    return _back_to_team(request, tenant)


@tenant_view(ADMIN_ONLY)
@require_POST
def member_remove(request: TenantRequest, tenant: Tenant, membership_id: int) -> HttpResponse:
    membership = get_object_or_404(Membership.objects.select_related("user"), tenant=tenant, pk=membership_id)
    try:
        services.membership_remove(tenant=tenant, membership=membership, actor=request.user)
    except BusinessError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{membership.user.email} was removed from {tenant.name}.")
        if membership.user_id == request.user.pk:
            return _redirect(request, reverse("home"))
    return _back_to_team(request, tenant)


def _redirect(request: TenantRequest, url: str) -> HttpResponse:
    return HttpResponseClientRedirect(url) if request.htmx else HttpResponseRedirect(url)


def _back_to_team(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    if request.htmx:
        return render(request, "tenants/team.html#team", _team_context(tenant))
    return redirect("team", slug=tenant.slug)


# --- invitations (the invitee's side) --------------------------------------------------------


@require_http_methods(["GET", "POST"])
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    try:
        invitation = services.invitation_for_token(token)
    except BusinessError as exc:
        return render(request, "tenants/invitation_invalid.html", {"error": exc}, status=exc.status)
    user = request.user if request.user.is_authenticated else None
    has_account = user is None and services.User.objects.filter(email__iexact=invitation.email).exists()
    form = AcceptInvitationForm(request.POST or None) if user is None and not has_account else None
    if request.method == "POST":
        try:
            if user is not None:
                user, membership = services.invitation_accept(token=token, user=user)
            elif form is not None and form.is_valid():
                user, membership = services.invitation_accept(
                    token=token,
                    password=form.cleaned_data["password"],
                    full_name=form.cleaned_data["full_name"],
                )
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            else:
                membership = None
        except BusinessError as exc:
            if form is not None:
                form.add_error(None, exc.message)
            else:
                messages.error(request, exc.message)
            membership = None
        if membership is not None:
            messages.success(
                request, f"You joined {membership.tenant.name} as {membership.get_role_display()}."
            )
            return redirect("tenant_home", slug=membership.tenant.slug)
    # Signed in as someone else than the invitee: the page says so, and the status says refused.
    wrong_user = user is not None and user.email.lower() != invitation.email.lower()
    return render(
        request,
        "tenants/invitation_accept.html",
        {"invitation": invitation, "form": form, "has_account": has_account, "token": token},
        status=403 if wrong_user else 400 if form is not None and form.errors else 200,
    )


# --- API keys --------------------------------------------------------------------------------


@tenant_view(ADMIN_ONLY)
@never_cache  # the page shows a new key's secret once: no browser or proxy may keep a copy
@require_http_methods(["GET", "POST"])
def api_keys(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    form = ApiKeyForm(request.POST or None)
    issued = None
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.api_key_create(
                tenant=tenant, name=form.cleaned_data["name"], actor=request.user
            )
        except BusinessError as exc:
            form.add_error("name", exc.message)
        else:
            form = ApiKeyForm()
    context = {"keys": selectors.api_keys_of(tenant=tenant), "form": form, "issued": issued}
    if request.htmx:  # htmx swaps only 2xx answers: the form with its errors comes back as 200
        return render(request, "tenants/api_keys.html#keys", context)
    return render(request, "tenants/api_keys.html", context, status=400 if form.errors else 200)


@tenant_view(ADMIN_ONLY)
@never_cache  # the page shows a new key's secret once: no browser or proxy may keep a copy
@require_POST
def api_key_revoke(request: TenantRequest, tenant: Tenant, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, tenant=tenant, pk=key_id)
    services.api_key_revoke(tenant=tenant, api_key=key, actor=request.user)
    messages.success(request, f"Key {key.name} revoked: it is refused from now on.")
    if request.htmx:
        context = {"keys": selectors.api_keys_of(tenant=tenant), "form": ApiKeyForm(), "issued": None}
        return render(request, "tenants/api_keys.html#keys", context)
    return redirect("api_keys", slug=tenant.slug)


# --- activity --------------------------------------------------------------------------------


@tenant_view(ADMIN_ONLY)
@require_GET
def activity(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    form = ActivityFilterForm(request.GET or None)
    filters = selectors.ActivityFilter(**form.cleaned_data) if form.is_valid() else selectors.ActivityFilter()
    events = selectors.activity(tenant=tenant, filters=filters).select_related(
        "actor_user"
    )  # names in sentences
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "actions": selectors.activity_actions(tenant=tenant),
        "query": query.urlencode(),
    }
    template = "tenants/activity.html#events" if request.htmx else "tenants/activity.html"
    return render(request, template, context)


@tenant_view()
@require_GET
@never_cache
def dev_mailbox_page(request: TenantRequest, tenant: Tenant) -> HttpResponse:
    """Development only (404 with DEBUG off): the signed-in user's own recent emails about this
    tenant (or about no tenant) — never anyone else's (the mail is read by the user's address)."""
    if not settings.DEBUG:
        raise Http404
    mails = dev_mailbox.mailbox(request.user.email, tenant_slug=tenant.slug)
    return render(request, "tenants/dev_mailbox.html", {"mails": mails})
