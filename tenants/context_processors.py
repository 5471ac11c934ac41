from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from tenants.models import Membership
from tenants.navigation import nav_for


def navigation(request: HttpRequest) -> dict:
    """The tenant switcher and the navigation of the current tenant, for the base layout."""
    membership = getattr(request, "membership", None)
    if membership is None or not request.user.is_authenticated:
        return {}
    return {
        "tenant": membership.tenant,
        "membership": membership,
        # Built only when a template shows the sidebar (an htmx fragment does not): an item's
        # condition may ask the database.
        "nav": SimpleLazyObject(lambda: nav_for(membership, request.path)),
        "my_tenants": Membership.objects.filter(user=request.user)
        .select_related("tenant")
        .order_by("tenant__name")
        .only("role", "tenant__name", "tenant__slug"),
    }
