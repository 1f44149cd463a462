"""Numbers no table holds, in paths and forms: a 404 or a clear 400, never a database error.

`<int:…>` route parts are bounded to 32 bits for every route (PostgreSQL's INTEGER keys
raise "out of range" beyond that, SQLite's driver overflows at 64 bits), and digits that
`str.isdigit()` accepts but `int()` does not ("²") are refused as the garbage they are.
"""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token

HUGE = "9" * 20


@pytest.mark.parametrize(
    "path",
    [
        f"/tickets/{HUGE}",
        f"/tickets/{2**31}",
        f"/agent/kb/1/revisions/{HUGE}",
        f"/help/articles/{HUGE}-anything",
        f"/portal/tickets/{HUGE}",
    ],
)
def test_huge_numbers_in_paths_are_not_found(client, agent, login, path):
    login(agent)
    assert client.get(path).status_code == 404


def test_huge_ticket_number_in_a_post_is_not_found(client, agent, login):
    login(agent)
    token = csrf_token(client, "/tickets")
    response = client.post(f"/tickets/{HUGE}/presence", data={"csrf_token": token})
    assert response.status_code == 404


def test_report_period_before_year_one_is_a_clear_400(client, agent, login):
    login(agent)
    response = client.get("/agent/reports/self-service?to=0001-01-01")
    assert response.status_code == 400
    assert "dates like" in response.get_data(as_text=True)


def test_deflection_with_a_superscript_article_id_is_still_thanked(client):
    token = csrf_token(client, "/contact")
    response = client.post("/contact/deflect", data={"csrf_token": token, "article_id": "\u00b2"})
    assert response.status_code == 200
