"""Forms of the Plans & Licenses page: the filter bar, Add/Edit client, the CSV upload and the
"Assign AI license" picker. Field rules are licensing.rules' (the API's and the import's too)."""

from __future__ import annotations

from typing import Any

from django import forms

from licensing import rules
from licensing.models import MAX_EXTERNAL_ID, MAX_NAME, MAX_TYPE, Client
from licensing.selectors import DEFAULT_SORT, SORTS, ClientFilters
from tenants.errors import BusinessError
from tenants.text import ascii_digits, no_control_characters

STATUS_CHOICES = [("", "Any status"), *Client.Status.choices]
LICENSE_CHOICES = [
    ("", "Any license"),
    ("ai", "AI license"),
    ("no_ai", "No AI license"),
    ("chat", "Chat license"),
    ("no_chat", "No Chat license"),
    ("none", "No license"),
    ("flagged", "Inactive, holding a license"),
]
SORT_CHOICES = [(key, key) for key in SORTS] + [(f"-{key}", f"-{key}") for key in SORTS]
MAX_IMPORT_BYTES = 2 * 1024 * 1024  # the request body limit (DATA_UPLOAD_MAX_MEMORY_SIZE) is 2.5 MB


class SearchInput(forms.TextInput):
    input_type = "search"


class ClientFilterForm(forms.Form):
    """The bar above the table (L11): search, status, company type, agreement type, license, and the
    column the table is sorted by. An invalid value filters nothing and says so."""

    q = forms.CharField(
        required=False,
        max_length=MAX_NAME,
        label="Search",
        validators=[no_control_characters],
        widget=SearchInput,
    )
    status = forms.ChoiceField(required=False, choices=STATUS_CHOICES, label="Status")
    company_type = forms.ChoiceField(required=False, label="Company type")
    agreement_type = forms.ChoiceField(required=False, label="Agreement type")
    license = forms.ChoiceField(required=False, choices=LICENSE_CHOICES, label="License")
    sort = forms.ChoiceField(required=False, choices=SORT_CHOICES, widget=forms.HiddenInput)

    def __init__(self, *args: Any, companies: list[str], agreements: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, values, blank in (
            ("company_type", companies, "Any company type"),
            ("agreement_type", agreements, "Any agreement type"),
        ):
            field = self.fields[name]
            assert isinstance(field, forms.ChoiceField)
            field.choices = [("", blank), *((v, v) for v in values)]
        self.fields["q"].widget.attrs.update(
            placeholder="Client name or id",
            type="search",
            autocomplete="off",
            **{"data-testid": "client-search"},
        )

    def filters(self) -> ClientFilters:
        if not self.is_bound:
            return ClientFilters()
        self.is_valid()
        data = self.cleaned_data
        return ClientFilters(
            q=(data.get("q") or "").strip(),
            status=data.get("status") or "",
            company_type=data.get("company_type") or "",
            agreement_type=data.get("agreement_type") or "",
            license=data.get("license") or "",
            sort=data.get("sort") or DEFAULT_SORT,
        )


class ClientForm(forms.Form):
    """Add client / Edit client (admins). The id is set once, when the client is added."""

    external_id = forms.CharField(
        max_length=MAX_EXTERNAL_ID,
        label="Client id",
        help_text="The client's id in your PSA (the API and the AI product name it by this id).",
    )
    name = forms.CharField(max_length=MAX_NAME, label="Name")
    status = forms.ChoiceField(choices=Client.Status.choices, initial=Client.Status.ACTIVE, label="Status")
    company_type = forms.CharField(max_length=MAX_TYPE, required=False, label="Company type")
    agreement_type = forms.CharField(max_length=MAX_TYPE, required=False, label="Agreement type")

    def __init__(self, *args: Any, editing: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["external_id"]

    def clean_external_id(self) -> str:
        try:
            return rules.clean_external_id(self.cleaned_data["external_id"], field="external_id")
        except BusinessError as exc:
            raise forms.ValidationError(exc.message.partition(": ")[2]) from None

    def fields_or_errors(self) -> rules.ClientFields | None:
        """The cleaned fields, or None with the error on the field it names."""
        data = self.cleaned_data
        try:
            return rules.clean_fields(
                name=data["name"],
                status=data["status"],
                company_type=data.get("company_type", ""),
                agreement_type=data.get("agreement_type", ""),
            )
        except BusinessError as exc:
            field, _, message = exc.message.partition(": ")
            self.add_error(field if field in self.fields else None, message)
            return None


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV file",
        help_text="UTF-8, one client a row, with a header row: external_id, name, status, company_type, "
        "agreement_type. Status, company_type and agreement_type may be left out: an existing client "
        "keeps what it has (an empty status too); a new one is active, with no types.",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"}),
    )

    def clean_file(self) -> tuple[str, str]:
        upload = self.cleaned_data["file"]
        if upload.size > MAX_IMPORT_BYTES:
            raise forms.ValidationError("The file is larger than 2 MB: split it into smaller files.")
        raw = upload.read()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise forms.ValidationError(
                "The file is not UTF-8 text: save it as CSV UTF-8 and try again."
            ) from None
        if "\x00" in text:  # PostgreSQL cannot keep it; the file is refused before it is stored
            line = text.count("\n", 0, text.index("\x00")) + 1
            raise forms.ValidationError(
                f"Line {line} holds a NUL character: the file is not CSV text. Save it as CSV UTF-8 "
                "and try again."
            )
        return (upload.name or "clients.csv")[:200], text


class ClientIdsField(forms.Field):
    """Ids of clients, as the picker's checkboxes send them (any number; the service takes only
    the tenant's own clients)."""

    widget = forms.MultipleHiddenInput
    default_error_messages = {
        "required": "Pick at least one client.",
        "invalid": "Pick clients from the list.",
    }

    def to_python(self, value: Any) -> list[int]:
        values = value or []
        if not all(ascii_digits(v) and len(v) < 19 for v in values):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return [int(v) for v in values]


class AssignForm(forms.Form):
    """The "Assign AI license" picker: the chosen clients."""

    clients = ClientIdsField(label="Clients")
