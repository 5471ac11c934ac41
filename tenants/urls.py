from django.urls import path

from tenants import views

# Pages of one tenant, mounted under /t/<slug>/.
tenant_patterns = [
    path("", views.tenant_home, name="tenant_home"),
    path("team/", views.team, name="team"),
    path("team/invitations/", views.invitation_create, name="invitation_create"),
    path("team/invitations/<int:invitation_id>/revoke/", views.invitation_revoke, name="invitation_revoke"),
    path("team/members/<int:membership_id>/role/", views.member_change_role, name="member_change_role"),
    path("team/members/<int:membership_id>/remove/", views.member_remove, name="member_remove"),
    path("api-keys/", views.api_keys, name="api_keys"),
    path("api-keys/<int:key_id>/revoke/", views.api_key_revoke, name="api_key_revoke"),
    path("activity/", views.activity, name="activity"),
    path("dev/mailbox/", views.dev_mailbox_page, name="dev_mailbox"),
]
