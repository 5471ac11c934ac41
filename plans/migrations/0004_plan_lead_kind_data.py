"""Set Plan.lead_kind on existing rows: the catalog's contact-sales plans by their code; any other
contact-sales plan staff made asks for a demo (staff may switch it in the admin). The button's
label is never read to decide it."""

from django.db import migrations

CATALOG_LEAD_KINDS = {"agents-enterprise": "book_demo", "credits-ultra": "specialist"}


def set_lead_kind(apps, schema_editor):
    Plan = apps.get_model("plans", "Plan")
    for plan in Plan.objects.filter(kind="contact_sales"):
        plan.lead_kind = CATALOG_LEAD_KINDS.get(plan.code, "book_demo")
        plan.save(update_fields=["lead_kind"])


class Migration(migrations.Migration):
    dependencies = [("plans", "0003_plan_lead_kind")]

    operations = [migrations.RunPython(set_lead_kind, migrations.RunPython.noop)]
