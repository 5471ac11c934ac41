"""Pages of licensing, mounted under /t/<slug>/."""

from django.urls import path

from licensing import views

tenant_patterns = [
    path("licenses/", views.plans_and_licenses, name="plans_and_licenses"),
    path("licenses/export.csv", views.licenses_csv, name="licenses_csv"),
    path("licenses/assign/", views.assign, name="licenses_assign"),
    path("licenses/release-inactive/", views.release_inactive, name="licenses_release_inactive"),
    path("licenses/clients/new/", views.client_new, name="client_new"),
    path("licenses/clients/<int:client_pk>/edit/", views.client_edit, name="client_edit"),
    path(
        "licenses/clients/<int:client_pk>/licenses/<str:kind>/", views.license_change, name="license_change"
    ),
    path("licenses/import/", views.import_new, name="client_import_new"),
    path("licenses/import/<int:import_id>/", views.client_import, name="client_import"),
    path("licenses/import/<int:import_id>/apply/", views.client_import_apply, name="client_import_apply"),
]
