from django.apps import AppConfig


class LicensingConfig(AppConfig):
    name = "licensing"
    verbose_name = "Client licenses and ticket credits (Helpdesk AI)"

    def ready(self) -> None:
        from licensing import registry

        registry.register()
