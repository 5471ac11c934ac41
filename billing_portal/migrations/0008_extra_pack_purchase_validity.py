from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing_portal", "0007_extra_pack_purchase"),
    ]

    operations = [
        migrations.AddField(
            model_name="extrapackpurchase",
            name="validity_days",
            # Purchases made before this column existed were sold with the 30 days C13 gives a pack.
            field=models.PositiveSmallIntegerField(default=30),
            preserve_default=False,
        ),
    ]
