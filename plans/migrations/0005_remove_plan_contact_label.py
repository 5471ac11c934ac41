from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("plans", "0004_plan_lead_kind_data")]

    operations = [
        migrations.RemoveField(model_name="plan", name="contact_label"),
        migrations.AddConstraint(
            model_name="plan",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "contact_sales"), ("lead_kind__in", ["book_demo", "specialist"]))
                | models.Q(models.Q(("kind", "contact_sales"), _negated=True), ("lead_kind", "")),
                name="plan_lead_kind_iff_contact_sales",
                violation_error_message="A contact-sales plan needs a lead kind (Book a demo or Speak with "
                "Specialist); other plans have none.",
            ),
        ),
    ]
