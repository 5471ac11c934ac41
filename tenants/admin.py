"""Platform staff: tenants, members, invitations, keys, the audit log and the email log."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm

from tenants import services
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Notification, Tenant, User


class _ReadOnly:
    """Rows the tenant's own pages change through the services (their rules and their audit: the
    last admin stays, a revoked key stays revoked, a key never moves to another tenant): staff read
    them here. Django's admin would otherwise edit any field, unaudited."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class MembershipInline(_ReadOnly, admin.TabularInline):
    model = Membership
    extra = 0
    fields = ["user", "role", "created_at"]
    readonly_fields = ["user", "role", "created_at"]


class _LowercaseEmail:
    """Emails are stored lower-case everywhere (UserManager, sign-up, invitations): staff typing
    `Pat@X.test` get `pat@x.test`, and a case variant of a taken address is a plain duplicate."""

    cleaned_data: dict

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()


class StaffUserCreationForm(_LowercaseEmail, AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("email",)


class StaffUserChangeForm(_LowercaseEmail, UserChangeForm):
    class Meta(UserChangeForm.Meta):
        model = User


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    form = StaffUserChangeForm
    add_form = StaffUserCreationForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_staff", "is_active", "date_joined", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active"]
    search_fields = ["email", "full_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("full_name",)}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug", "memberships__user__email"]
    inlines = [MembershipInline]

    def get_search_results(self, request, queryset, search_term):
        queryset, _ = super().get_search_results(request, queryset, search_term)
        return queryset.distinct(), False


@admin.register(Membership)
class MembershipAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "tenant__name", "tenant__slug"]
    list_select_related = ["user", "tenant"]
    autocomplete_fields = ["user", "tenant"]


@admin.register(Invitation)
class InvitationAdmin(_ReadOnly, admin.ModelAdmin):
    list_display = ["email", "tenant", "role", "status", "created_at", "expires_at"]
    list_filter = ["status", "role"]
    search_fields = ["email", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
    readonly_fields = ["token_hash", "accepted_at", "accepted_by", "invited_by"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "prefix", "tenant", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "tenant__name", "tenant__slug"]
    list_select_related = ["tenant"]
    readonly_fields = ["prefix", "key_hash", "created_by", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # keys are created by tenant admins, who see the secret once

    def has_change_permission(self, request, obj=None):
        # The list and its action only: an edit form could move a key to another tenant or clear
        # its revocation, unaudited.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return False  # revoked, never deleted: the audit log names it

    @admin.action(description="Revoke keys (refused at once, audited)")
    def revoke(self, request, queryset):
        for key in queryset.select_related("tenant"):
            services.api_key_revoke(tenant=key.tenant, api_key=key, actor=request.user)
        self.message_user(request, f"{queryset.count()} key(s) revoked.")


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "actor_label", "action", "target_label"]
    list_filter = ["actor_type", "action"]
    search_fields = ["tenant__name", "tenant__slug", "actor_label", "action", "target_label"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"

    # Append-only: staff read the log, nobody edits or deletes it.
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(admin.ModelAdmin):
    list_display = ["created_at", "key", "to_email", "status", "attempts", "sent_at"]
    list_filter = ["status", "template"]
    search_fields = ["key", "to_email", "tenant__slug"]
    readonly_fields = [f.name for f in Notification._meta.fields]

    def has_add_permission(self, request):
        return False
