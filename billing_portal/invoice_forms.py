"""The filters of the Invoices page (and of its CSV export, which keeps them)."""

from __future__ import annotations

from typing import Any

from django import forms

from billing_portal.models import Invoice


class InvoiceFilterForm(forms.Form):
    status = forms.ChoiceField(choices=[("", "All statuses"), *Invoice.Status.choices], required=False)
    since = forms.DateField(
        required=False, label="Issued from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(required=False, label="Issued to", widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return cleaned

    def filters(self) -> dict[str, Any]:
        """Keyword arguments for `selectors.invoices_for`: the fields that are valid and set; an
        invalid field filters nothing and shows its error."""
        if not self.is_bound:
            return {}
        self.is_valid()
        return {name: value for name, value in self.cleaned_data.items() if value}
