from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from billing_portal import urls as billing_urls
from billing_portal import views as billing_views
from config.api import api
from credits import urls as credits_urls
from licensing import urls as licensing_urls
from sessions_billing import urls as sessions_urls
from tenants import views as tenant_views
from tenants.forms import LoginForm, QueuedPasswordResetForm
from tenants.urls import tenant_patterns

accounts = [
    path("signup/", billing_views.signup, name="signup"),
    path(
        "login/",
        auth_views.LoginView.as_view(authentication_form=LoginForm, redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/reset/",
        auth_views.PasswordResetView.as_view(form_class=QueuedPasswordResetForm),
        name="password_reset",
    ),
    path("password/reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password/reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(
            post_reset_login=True, post_reset_login_backend="django.contrib.auth.backends.ModelBackend"
        ),
        name="password_reset_confirm",
    ),
    path(
        "password/reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"
    ),
    path("password/change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path("password/change/done/", auth_views.PasswordChangeDoneView.as_view(), name="password_change_done"),
]

urlpatterns = [
    path("", tenant_views.home, name="home"),
    path("healthz", tenant_views.healthz, name="healthz"),
    # Before the pages: the integration API is the hot path, and Django tries the patterns in order
    # (no other pattern starts with api/).
    path("api/v1/", api.urls),
    path("accounts/", include(accounts)),
    path("invitations/<str:token>/", tenant_views.invitation_accept, name="invitation_accept"),
    path("organizations/new/", billing_views.tenant_new, name="tenant_new"),
    path("t/<slug:slug>/", include(tenant_patterns)),
    path("t/<slug:slug>/", include(billing_urls.tenant_patterns)),
    path("t/<slug:slug>/", include(credits_urls.tenant_patterns)),
    path("t/<slug:slug>/", include(sessions_urls.tenant_patterns)),
    path("t/<slug:slug>/", include(licensing_urls.tenant_patterns)),
    path("", include(billing_urls.global_patterns)),
    path("admin/", admin.site.urls),
]
