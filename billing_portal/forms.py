from datetime import UTC, datetime, time

from django import forms

from plans.services import When

MSG_CHOOSE_WHEN = "Choose when the change applies."
LEAD_MESSAGE_MAX = 2000  # characters
MSG_LEAD_TOO_LONG = "Your message is too long: at most 2,000 characters. Nothing was sent."


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
        max_length=LEAD_MESSAGE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"max_length": MSG_LEAD_TOO_LONG},
    )
