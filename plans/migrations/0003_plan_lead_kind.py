from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("plans", "0002_catalog")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="lead_kind",
            field=models.CharField(
                blank=True,
                choices=[("book_demo", "Book a demo"), ("specialist", "Speak with Specialist")],
                help_text="Contact-sales plans only: what the card's button asks for.",
                max_length=16,
            ),
        ),
    ]
