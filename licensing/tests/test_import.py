"""Importing clients from CSV: checked first (every bad row with its line number), then applied as a
whole or not at all; large files are checked and applied by Celery tasks with the progress shown."""

from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from licensing import imports, services
from licensing.factories import ClientFactory
from licensing.models import Client, ClientImport
from tenants.models import AuditEvent

pytestmark = pytest.mark.django_db

IMPORT = "/t/acme/licenses/import/"


def upload(client, content: str | bytes, name: str = "clients.csv"):
    data = content.encode() if isinstance(content, str) else content
    return client.post(IMPORT, {"file": SimpleUploadedFile(name, data, content_type="text/csv")})


def clients_of(tenant) -> list[tuple[str, str, str, str, str]]:
    """The tenant's clients as an import sets them, by external id."""
    return sorted(
        Client.objects.filter(tenant=tenant).values_list(
            "external_id", "name", "status", "company_type", "agreement_type"
        )
    )


def errors(found: ClientImport) -> list[tuple[int, str]]:
    return [(e["line"], e["message"]) for e in found.errors]


# --- the check (pure) ------------------------------------------------------------------------------


def test_every_bad_row_is_reported_with_its_line_number():
    text = (
        "external_id,name,status,company_type,agreement_type\n"
        "1001,Contoso,active,Customer,Managed\n"
        "1002,,active,,\n"  # line 3: no name
        "1003,Fabrikam,sleeping,,\n"  # line 4: bad status
        "\n"  # line 5: blank, skipped
        '1004,"Tail\nspin",active,,\n'  # lines 6-7: a quoted name over two lines (one row, "Tail spin")
        "1001,Contoso again,active,,\n"  # line 8: the id is on line 2 already
        "1005,Too,many,values,here,extra\n"  # line 9
        "10/06,Slash,active,,\n"  # line 10
        "1007,Nul\x00,active,,\n"  # line 11
    )

    checked = imports.check(text)

    assert checked.errors == [
        {"line": 3, "message": "name: This field is required."},
        {"line": 4, "message": "status: Use active or inactive."},
        {"line": 8, "message": "The client id 1001 is also on line 2."},
        {"line": 9, "message": "6 values for 5 columns."},
        {"line": 10, "message": "external_id: Use printable characters, without '/'."},
        {"line": 11, "message": "The row contains a NUL character."},
    ]
    assert (checked.total, checked.error_count) == (8, 6)
    assert [(r.line, r.external_id, r.fields.name) for r in checked.rows] == [
        (2, "1001", "Contoso"),
        (6, "1004", "Tail spin"),
    ]


def test_the_header_names_the_columns_in_any_order_and_case():
    checked = imports.check("Name,Client_ID\nContoso,c1\n")
    assert (
        checked.errors,
        [(r.line, r.external_id, r.fields.name, r.fields.status) for r in checked.rows],
    ) == (
        [],
        [(2, "c1", "Contoso", "active")],
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", [(1, "The file is empty: it needs a header row and one row per client.")]),
        ("external_id,name\n", [(2, "The file has a header row but no clients.")]),
        (
            "external_id,fullname\n1,A\n",
            [
                (
                    1,
                    "Unknown column 'fullname': use external_id, name, status, company_type, agreement_type.",
                ),
                (1, "The header row has no name column."),
            ],
        ),
        ("external_id,name,name\n1,A,B\n", [(1, "The column name appears twice.")]),
        (
            "external_id;name;status\n1;A;active\n",
            [
                (
                    1,
                    "The values are separated by semicolons, not commas: save the file as CSV with commas "
                    "(CSV UTF-8) and try again.",
                )
            ],
        ),
        (
            "external_id\tname\n1\tA\n",
            [
                (
                    1,
                    "The values are separated by tabs, not commas: save the file as CSV with commas "
                    "(CSV UTF-8) and try again.",
                )
            ],
        ),
    ],
)
def test_a_file_without_a_usable_header_or_rows_is_refused(text, expected):
    """A header that names no usable columns is refused on line 1 in words that say what to change
    (a file saved with semicolons or tabs between its values, as some spreadsheets do)."""
    assert [(e["line"], e["message"]) for e in imports.check(text).errors] == expected


# --- through the page ------------------------------------------------------------------------------------


def test_a_file_with_errors_imports_nothing_and_lists_the_lines(essentials, admin, client_for):
    client = client_for(admin)

    response = upload(client, "external_id,name,status\nc1,Contoso,active\nc2,Fabrikam,asleep\n")

    found = ClientImport.objects.get()
    assert response["Location"] == f"{IMPORT}{found.pk}/"
    assert (found.status, errors(found)) == ("invalid", [(3, "status: Use active or inactive.")])
    page = client.get(response["Location"]).content.decode()
    assert "This file has 1 error: nothing was imported" in page
    assert re.findall(r'<td class="right mono">(\d+)</td><td>([^<]+)</td>', page) == [
        ("3", "status: Use active or inactive.")
    ]
    assert client.post(f"{IMPORT}{found.pk}/apply/").status_code == 302
    assert not Client.objects.exists()


def test_preview_then_apply_creates_and_updates_in_one_go_and_is_audited(essentials, admin, client_for):
    ClientFactory(tenant=essentials, external_id="c1", name="Contoso", company_type="", agreement_type="")
    ClientFactory(tenant=essentials, external_id="c2", name="Old name", company_type="", agreement_type="")
    client = client_for(admin)

    response = upload(
        client,
        "external_id,name,status,company_type,agreement_type\n"
        "c1,Contoso,active,,\n"
        "c2,Fabrikam,inactive,Customer,Break-fix\n"
        "c3,Tailspin,,Prospect,\n",
        name="psa-export.csv",
    )
    found = ClientImport.objects.get()
    assert (found.status, found.new, found.updated, found.unchanged) == ("ready", 1, 1, 1)
    preview = client.get(response["Location"]).content.decode()
    assert re.findall(r'data-testid="import-(new|updated|unchanged)">(\d+)<', preview) == [
        ("new", "1"),
        ("updated", "1"),
        ("unchanged", "1"),
    ]
    assert not Client.objects.filter(external_id="c3").exists()  # nothing until Import
    # The page promises "you see what it would add and change": which client, each field before and
    # after, and a client the file marks inactive flagged (an outsider probe saw only the counts).
    change = re.search(r'<tr data-testid="import-change">(.*?)</tr>', preview, re.S)
    assert change is not None
    text = " ".join(re.sub(r"<[^>]+>", " ", change.group(1)).split())
    assert text == (
        "3 Old name c2 Marked inactive Client name: Old name → Fabrikam Status: Active → Inactive "
        "Company type: (empty) → Customer Agreement type: (empty) → Break-fix"
    )

    client.post(f"{IMPORT}{found.pk}/apply/")
    client.post(f"{IMPORT}{found.pk}/apply/")  # a double click imports once

    assert clients_of(essentials) == [
        ("c1", "Contoso", "active", "", ""),
        ("c2", "Fabrikam", "inactive", "Customer", "Break-fix"),
        ("c3", "Tailspin", "active", "Prospect", ""),
    ]
    found.refresh_from_db()
    assert (found.status, found.new, found.updated, found.unchanged) == ("applied", 1, 1, 1)
    event = AuditEvent.objects.get(tenant=essentials, action="clients.imported")
    assert (event.actor_user, event.target_label, event.data) == (
        admin,
        "psa-export.csv",
        {"new": 1, "updated": 1, "unchanged": 1},
    )


def test_an_import_never_touches_licenses(essentials, admin, client_for):
    ClientFactory(tenant=essentials, external_id="c1", ai_license_since="2022-05-01T00:00Z")
    client = client_for(admin)
    upload(client, "external_id,name,status\nc1,Gone Co,inactive\n")
    client.post(f"{IMPORT}{ClientImport.objects.get().pk}/apply/")
    c1 = Client.objects.get(external_id="c1")
    assert (c1.status, c1.ai_license, c1.flagged) == ("inactive", True, True)


def test_a_file_that_is_not_utf8_is_refused_at_upload(essentials, admin, client_for):
    response = upload(client_for(admin), "external_id,name\nc1,Caf\xe9\n".encode("latin-1"))
    assert response.status_code == 422
    assert "The file is not UTF-8 text: save it as CSV UTF-8 and try again." in response.content.decode()
    assert not ClientImport.objects.exists()


def test_a_utf8_file_with_a_byte_order_mark_reads_its_header(essentials, admin, client_for):
    upload(client_for(admin), "\ufeffexternal_id,name\nc1,Café\n".encode())
    assert ClientImport.objects.get().status == "ready"


def test_a_large_file_is_checked_and_applied_by_tasks_with_progress(
    essentials, admin, client_for, django_capture_on_commit_callbacks
):
    rows = "".join(f"c{i},Client {i},active,Customer,Managed\n" for i in range(2500))
    client = client_for(admin)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = upload(client, "external_id,name,status,company_type,agreement_type\n" + rows)
    found = ClientImport.objects.get()
    assert (found.status, found.total, found.processed) == ("checking", 2500, 0)
    waiting = client.get(response["Location"], HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 1s"' in waiting
    assert '<progress max="2500" value="0"' in waiting

    seen: list[int] = []
    original = services.ClientImport.objects.filter

    def spy(*args, **kwargs):  # the progress the check commits as it goes
        query = original(*args, **kwargs)
        real = query.update

        def update(**values):
            if set(values) == {"processed"}:
                seen.append(values["processed"])
            return real(**values)

        query.update = update
        return query

    services.ClientImport.objects.filter = spy  # type: ignore[method-assign]
    try:
        for callback in queued:
            callback()
    finally:
        services.ClientImport.objects.filter = original  # type: ignore[method-assign]
    assert seen == [500, 1000, 1500, 2000, 2500]
    found.refresh_from_db()
    assert (found.status, found.new) == ("ready", 2500)

    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"{IMPORT}{found.pk}/apply/")
    found.refresh_from_db()
    assert (found.status, found.new, Client.objects.filter(tenant=essentials).count()) == (
        "applied",
        2500,
        2500,
    )


def test_a_failed_apply_imports_nothing_and_can_be_tried_again(essentials, admin, monkeypatch):
    found = services.client_import_create(
        tenant=essentials, filename="x.csv", content="external_id,name\nc1,A\nc2,B\n", actor=admin
    )
    services.client_import_check(import_id=found.pk)
    ClientImport.objects.filter(pk=found.pk).update(status="applying")

    def broken(*args, **kwargs):
        raise RuntimeError("database went away")

    from licensing import tasks

    monkeypatch.setattr(Client.objects, "bulk_update", broken)
    with pytest.raises(RuntimeError):
        tasks.apply_client_import(found.pk, admin.pk)

    found.refresh_from_db()
    assert found.status == "failed"
    assert found.errors[0]["message"].startswith("The import failed and nothing was imported")
    assert not Client.objects.exists()
    monkeypatch.undo()
    services.client_import_start(tenant=essentials, import_id=found.pk, actor=admin)
    assert Client.objects.filter(tenant=essentials).count() == 2


def test_l03_a_column_left_out_leaves_what_an_existing_client_has(essentials, admin, client_for):
    """A name-only file (or an empty status cell) renames; it does not make an inactive client
    active nor clear its types, which would start its tickets spending credits. A new client is
    active, with no types."""
    ClientFactory(
        tenant=essentials, external_id="c1", name="Vertex", status="inactive",
        company_type="Customer", agreement_type="Break-fix",
    )  # fmt: skip
    ClientFactory(
        tenant=essentials, external_id="c2", name="Alder", status="inactive",
        company_type="Partner", agreement_type="Block hours",
    )  # fmt: skip
    client = client_for(admin)

    upload(client, "external_id,name\nc1,Vertex Labs\nc3,New Co\n")
    found = ClientImport.objects.get()
    assert (found.new, found.updated, found.unchanged) == (1, 1, 0)
    client.post(f"{IMPORT}{found.pk}/apply/")
    # An empty status is kept; an empty company type clears it; the agreement type is left out.
    upload(client, "external_id,name,status,company_type\nc2,Alder,,\n")
    client.post(f"{IMPORT}{ClientImport.objects.latest('pk').pk}/apply/")

    assert clients_of(essentials) == [
        ("c1", "Vertex Labs", "inactive", "Customer", "Break-fix"),
        ("c2", "Alder", "inactive", "", "Block hours"),
        ("c3", "New Co", "active", "", ""),
    ]


def test_a_record_that_is_not_csv_is_reported_on_the_line_it_starts():
    text = 'external_id,name\nA1,a\nA2,b\nA3,c\nA4,"' + "x" * 140_000 + '"\nA5,e\n'
    checked = imports.check(text)
    assert [e["line"] for e in checked.errors] == [5]
    assert str(checked.errors[0]["message"]).startswith("The file is not valid CSV (field larger than")
    assert [e["line"] for e in imports.check('external_id,name\nA1,"' + "x" * 140_000 + '"\n').errors] == [2]


def test_an_unterminated_quote_is_reported_not_read_as_one_client_swallowing_the_rows_after_it():
    """A quote opened and never closed makes the rest of the file one cell: the check says so on the
    line the record starts, instead of importing one client named after the rows that follow it
    (the file is imported as a whole or not at all; three clients must not become one)."""
    checked = imports.check('external_id,name\nA1,"Acme\nA2,Beta\nA3,Gamma\n')

    assert checked.rows == []
    assert [e["line"] for e in checked.errors] == [2]
    assert str(checked.errors[0]["message"]).startswith("The file is not valid CSV (")


def test_a_file_holding_a_nul_is_refused_at_upload_with_its_line(essentials, admin, client_for):
    """PostgreSQL cannot keep a NUL: the file is refused before it is stored (it was a 500)."""
    response = upload(client_for(admin), "external_id,name\nQI-5,Fine\nQI-6,N\x00ul\n")
    assert response.status_code == 422
    assert "Line 3 holds a NUL character" in response.content.decode()
    assert not ClientImport.objects.exists()


def test_an_upload_over_the_request_limit_is_refused_in_words(essentials, admin, client_for, settings):
    response = upload(client_for(admin), "external_id,name\n" + "c,x\n" * 700_000)  # 2.8 MB
    assert response.status_code == 413
    assert "The upload is larger than 2.5 MB: split the file into smaller files" in response.content.decode()
    assert not ClientImport.objects.exists()
