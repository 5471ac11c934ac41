from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm

from tenants.models import Role


class SignupForm(forms.Form):
    full_name = forms.CharField(max_length=150, required=False, label="Your name")
    email = forms.EmailField(label="Work email")
    password = forms.CharField(widget=forms.PasswordInput, label="Password", min_length=10)
    organization = forms.CharField(max_length=120, label="Organization name")


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
    email = forms.EmailField()
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptInvitationForm(forms.Form):
    full_name = forms.CharField(max_length=150, required=False, label="Your name")
    password = forms.CharField(widget=forms.PasswordInput, label="Choose a password", min_length=10)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=80, label="Key name", help_text="For example the system that uses it.")


class ActivityFilterForm(forms.Form):
    action = forms.CharField(required=False)
    actor = forms.CharField(required=False)
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))


class QueuedPasswordResetForm(PasswordResetForm):
    """Password reset through the once-only notification log and a worker, like every email.

    Also reaches active users who never chose a password (created by an operator or invited),
    so "Forgot your password?" works for them too."""

    def get_users(self, email):
        from tenants.models import User

        return User.objects.filter(email__iexact=email, is_active=True)

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
