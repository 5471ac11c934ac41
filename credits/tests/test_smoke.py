import pytest

from credits import services
from credits.factories import grant
from credits.selectors import figures


@pytest.mark.django_db
def test_smoke(plus):
    grant(plus, 100)
    out = services.credits_consume(tenant=plus, feature="ai_review", quantity=1, idempotency_key="k1")
    assert out.answer["consumed"] == "0.1"
    assert out.answer["balance"] == "99.9"
    f = figures(tenant_id=plus.pk)
    assert f.balance == 99900
