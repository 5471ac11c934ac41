"""Pages of sessions_billing, mounted under /t/<slug>/."""

from django.urls import path

from sessions_billing import views

tenant_patterns = [
    path("sessions/", views.sessions, name="sessions"),
    path("sessions/export.csv", views.sessions_csv, name="sessions_csv"),
    path("agents/", views.agents, name="agents"),
    path("agents/register/", views.agent_register, name="agent_register"),
    path("billing/session-limit/", views.session_limit, name="session_limit"),
]
