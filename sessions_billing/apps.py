from django.apps import AppConfig


class SessionsBillingConfig(AppConfig):
    name = "sessions_billing"
    verbose_name = "Billable sessions of AI agents"

    def ready(self) -> None:
        from sessions_billing import registry

        registry.register()
