from django.apps import AppConfig


class PlansConfig(AppConfig):
    name = "plans"
    verbose_name = "Plans and subscriptions"

    def ready(self) -> None:
        from plans import audit_sentences
        from tenants.audit import register_sentences

        register_sentences(
            audit_sentences.SENTENCES, labels=audit_sentences.LABELS, folds=audit_sentences.FOLDS
        )
