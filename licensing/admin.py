"""Platform staff: every tenant's clients, the tickets that got AI and the CSV imports. Read-only:
licenses change only through the services (caps, audit), which the Plans & Licenses page and the
API call; an edit here would step around them."""

from django.contrib import admin
from django.http import HttpRequest

from licensing.models import Client, ClientImport, Ticket


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Client)
class ClientAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["name", "external_id", "tenant", "status", "ai_license_since", "chat_license_since"]
    list_filter = ["status"]
    search_fields = ["name", "external_id", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]


@admin.register(Ticket)
class TicketAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["ticket_id", "tenant", "client", "via", "created_at"]
    list_filter = ["via"]
    search_fields = ["ticket_id", "tenant__slug", "client__external_id"]
    list_select_related = ["tenant", "client"]


@admin.register(ClientImport)
class ClientImportAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["filename", "tenant", "status", "total", "new", "updated", "error_count", "created_at"]
    list_filter = ["status"]
    search_fields = ["filename", "tenant__slug"]
    list_select_related = ["tenant"]
    exclude = ["content"]
