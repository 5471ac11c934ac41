from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "AI credits and ticket credits"

    def ready(self) -> None:
        from credits import navigation

        navigation.register()
