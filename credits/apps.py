from django.apps import AppConfig


class CreditsConfig(AppConfig):
    name = "credits"
    verbose_name = "AI credits and ticket credits"

    def ready(self) -> None:
        from credits import audit_sentences, navigation
        from tenants.audit import register_sentences

        navigation.register()
        register_sentences(audit_sentences.SENTENCES, labels=audit_sentences.LABELS)
