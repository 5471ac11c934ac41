import logging
import unicodedata
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.http import HttpRequest

from tenants.models import Role
from tenants.text import no_control_characters
from tenants.throttle import client_ip, hit_within_limit

log = logging.getLogger(__name__)


class SignupForm(forms.Form):
    full_name = forms.CharField(
        max_length=150, required=False, label="Your name", validators=[no_control_characters]
    )
    # User.email and Invitation.email hold 254 characters (RFC 5321's path limit), the form's field
    # 320: longer was a DataError (a 500) on PostgreSQL.
    email = forms.EmailField(label="Work email", max_length=254, validators=[no_control_characters])
    password = forms.CharField(widget=forms.PasswordInput, label="Password", min_length=10)
    organization = forms.CharField(
        max_length=120, label="Organization name", validators=[no_control_characters]
    )


class LoginForm(AuthenticationForm):
    username = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autofocus": True}))


def login_throttle_username(request, credentials: dict | None) -> str | None:
    """The name django-axes counts a login attempt under (AXES_USERNAME_CALLABLE): the email as
    the login matches it, case-insensitively. Counted verbatim, `Admin@x` and `admin@x` would each
    get their own allowance of failures, and changing the case would escape the lockout."""
    data = credentials if credentials else getattr(request, "data", request.POST)
    username = data.get(settings.AXES_USERNAME_FORM_FIELD)
    return username.strip().lower() if isinstance(username, str) else username


class InviteForm(forms.Form):
    email = forms.EmailField(max_length=254, validators=[no_control_characters])
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptInvitationForm(forms.Form):
    full_name = forms.CharField(
        max_length=150, required=False, label="Your name", validators=[no_control_characters]
    )
    password = forms.CharField(widget=forms.PasswordInput, label="Choose a password", min_length=10)


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        max_length=80,
        label="Key name",
        help_text="For example the system that uses it.",
        validators=[no_control_characters],
    )


class ActivityFilterForm(forms.Form):
    action = forms.CharField(required=False)
    actor = forms.CharField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


def password_reset_allowed(*, email: str, request: HttpRequest | None) -> bool:
    """One more reset email for `email`, asked by `request`'s client, within the limits? Every
    request counts, for an address with an account or without (a limit that only counted real
    accounts would tell which addresses have one). Both counters count, whatever the answer."""
    window = settings.PASSWORD_RESET_LIMIT_WINDOW
    by_email = hit_within_limit(
        scope="password-reset:email",
        key=email.strip().lower(),
        limit=settings.PASSWORD_RESET_LIMIT_PER_EMAIL,
        window=window,
    )
    ip = client_ip(request) if request is not None else None
    by_ip = not ip or hit_within_limit(
        scope="password-reset:ip", key=ip, limit=settings.PASSWORD_RESET_LIMIT_PER_IP, window=window
    )
    if not (by_email and by_ip):
        log.warning(
            "Password reset not sent: over the %s limit (client %s)", "address" if not by_email else "IP", ip
        )
    return by_email and by_ip


def _same_address(a: str, b: str) -> bool:
    """Django's `_unicode_ci_compare` (private there): NFKC, then case-folded."""
    return unicodedata.normalize("NFKC", a).casefold() == unicodedata.normalize("NFKC", b).casefold()


class QueuedPasswordResetForm(PasswordResetForm):
    """Password reset through the once-only notification log and a worker, like every email.

    Also reaches active users who never chose a password (created by an operator or invited),
    so "Forgot your password?" works for them too. Throttled per address and per client IP
    (settings.PASSWORD_RESET_LIMIT_*), silently: over a limit the page answers exactly as when an
    email was sent, and nothing is sent."""

    def save(self, *args: Any, **kwargs: Any) -> None:
        # PasswordResetView passes everything by keyword, `request` included.
        if password_reset_allowed(email=self.cleaned_data["email"], request=kwargs.get("request")):
            super().save(*args, **kwargs)

    def get_users(self, email):
        from tenants.models import User

        # As Django's own: the database's case-insensitive match, then Unicode's (UTR 36), so an
        # address that only looks alike once upper-cased (a dotless i) matches no one (CVE-2019-19844).
        found = User.objects.filter(email__iexact=email, is_active=True)
        return [user for user in found if _same_address(email, user.email)]

    def send_mail(
        self,
        subject_template_name,
        email_template_name,
        context,
        from_email,
        to_email,
        html_email_template_name=None,
    ) -> None:
        import secrets

        from tenants.notifications import notify

        user = context["user"]
        notify(
            key=f"password-reset:{user.pk}:{secrets.token_hex(8)}",
            to=to_email,
            template="password_reset",
            context={"user": user, "link": settings.SITE_URL + _reset_path(context)},
        )


def _reset_path(context: dict) -> str:
    from django.urls import reverse

    return reverse("password_reset_confirm", kwargs={"uidb64": context["uid"], "token": context["token"]})
