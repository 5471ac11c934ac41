from datetime import UTC, datetime, time

from django import forms

from plans.services import When


class PlanChangeForm(forms.Form):
    """Apply subscription updates."""

    when = forms.ChoiceField(choices=When.CHOICES, widget=forms.RadioSelect, initial=When.PERIOD_END)
    custom_date = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def effective_custom_date(self) -> datetime | None:
        day = self.cleaned_data.get("custom_date")
        # A custom date takes effect at the start of that day, UTC.
        return datetime.combine(day, time.min, tzinfo=UTC) if day else None


class LeadForm(forms.Form):
    message = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))
