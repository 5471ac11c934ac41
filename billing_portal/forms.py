from datetime import UTC, datetime, time

from django import forms

from plans.services import MAX_LEAD_MESSAGE, When

MSG_CHOOSE_WHEN = "Choose when the change applies."
MSG_LEAD_TOO_LONG = f"Your message is too long: at most {MAX_LEAD_MESSAGE:,} characters. Nothing was sent."


class PlanChangeForm(forms.Form):
    """Apply subscription updates."""

    when = forms.ChoiceField(
        choices=When.CHOICES,
        widget=forms.RadioSelect,
        initial=When.PERIOD_END,
        error_messages={"required": MSG_CHOOSE_WHEN, "invalid_choice": MSG_CHOOSE_WHEN},
    )
    custom_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def effective_custom_date(self) -> datetime | None:
        day = self.cleaned_data.get("custom_date")
        # A custom date takes effect at the start of that day, UTC.
        return datetime.combine(day, time.min, tzinfo=UTC) if day else None


class LeadForm(forms.Form):
    message = forms.CharField(
        required=False,
        max_length=MAX_LEAD_MESSAGE,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"max_length": MSG_LEAD_TOO_LONG},
    )
