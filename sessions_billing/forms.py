"""Forms of the Sessions and Agents screens and of the Session limit card."""

from __future__ import annotations

from typing import Any

from django import forms

from sessions_billing.models import MAX_ID_LENGTH
from sessions_billing.selectors import SessionFilters
from sessions_billing.services import MAX_LIMIT
from tenants.text import no_control_characters

ANSWERED = [("", "Answered or not"), ("yes", "Answered"), ("no", "Not answered")]


class SessionFilterForm(forms.Form):
    q = forms.CharField(
        required=False, max_length=MAX_ID_LENGTH, label="Search", validators=[no_control_characters]
    )
    agent = forms.ChoiceField(required=False, label="Agent")
    since = forms.DateField(
        required=False, label="Started from", widget=forms.DateInput(attrs={"type": "date"})
    )
    until = forms.DateField(
        required=False, label="Started to", widget=forms.DateInput(attrs={"type": "date"})
    )
    answered = forms.ChoiceField(required=False, choices=ANSWERED, label="Answered")

    def __init__(self, *args: Any, agents: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        agent_field = self.fields["agent"]
        assert isinstance(agent_field, forms.ChoiceField)
        agent_field.choices = [("", "All agents"), *((a, a) for a in agents)]
        self.fields["q"].widget.attrs.update(placeholder="Conversation id", type="search")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            self.add_error("until", "The end date is before the start date.")
        return cleaned

    def filters(self) -> SessionFilters:
        """The valid filters; an invalid field filters nothing and shows its error."""
        if not self.is_bound:
            return SessionFilters()
        self.is_valid()
        data = self.cleaned_data
        answered = {"yes": True, "no": False}.get(data.get("answered") or "")
        return SessionFilters(
            q=(data.get("q") or "").strip(),
            agent=data.get("agent") or "",
            since=data.get("since"),
            until=data.get("until"),
            answered=answered,
        )


class SessionLimitForm(forms.Form):
    session_limit = forms.IntegerField(
        label="Session limit",
        min_value=1,
        max_value=MAX_LIMIT,
        error_messages={
            "required": "Enter the maximum number of sessions.",
            "invalid": "Enter a whole number greater than zero.",
            "min_value": "The value must be greater than zero.",
            "max_value": "Enter a smaller number.",
        },
        widget=forms.NumberInput(attrs={"min": 1, "step": 1, "inputmode": "numeric"}),
    )


class AgentForm(forms.Form):
    key = forms.CharField(
        max_length=MAX_ID_LENGTH,
        label="Agent id",
        validators=[no_control_characters],
        help_text="The id your AI product sends as `agent`.",
    )
    name = forms.CharField(
        max_length=MAX_ID_LENGTH, required=False, label="Name", validators=[no_control_characters]
    )
