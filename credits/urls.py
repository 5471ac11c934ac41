"""Pages of the credits app, mounted under /t/<slug>/."""

from django.urls import path

from credits import views

tenant_patterns = [
    path("marketplace/", views.marketplace, name="marketplace"),
    path("marketplace/ai-credits/", views.ai_credits, name="ai_credits"),
    path("statistics/ai-credits/", views.ai_statistics, name="ai_statistics"),
    path("statistics/ai-credits/export.csv", views.ai_statistics_csv, name="ai_statistics_csv"),
]
