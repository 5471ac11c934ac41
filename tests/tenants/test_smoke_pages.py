import pytest


@pytest.mark.django_db
def test_admin_sees_team_page(client_for, admin, member, tenant):
    response = client_for(admin).get(f"/t/{tenant.slug}/team/")
    assert response.status_code == 200
    assert b"member@acme.test" in response.content
