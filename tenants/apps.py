from django.apps import AppConfig


class TenantsConfig(AppConfig):
    name = "tenants"
    verbose_name = "Tenants and access"

    def ready(self) -> None:
        from tenants import dashboard
        from tenants.access import ADMIN_ONLY, ALL_ROLES
        from tenants.audit import TENANT_LABELS, TENANT_SENTENCES, register_sentences
        from tenants.navigation import NavItem, register
        from tenants.selectors import team_tile

        register(
            NavItem("Overview", "tenant_home", ALL_ROLES, order=0, icon="home"),
            NavItem("Team", "team", ADMIN_ONLY, order=80, icon="people"),
            NavItem("API keys", "api_keys", ADMIN_ONLY, order=85, icon="lock"),
            NavItem("Activity", "activity", ADMIN_ONLY, order=90, icon="list"),
        )
        register_sentences(TENANT_SENTENCES, labels=TENANT_LABELS)
        dashboard.register(
            dashboard.Tile("team", "tenants/tiles/team.html", team_tile, order=90, roles=ADMIN_ONLY)
        )
