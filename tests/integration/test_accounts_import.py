"""`flask --app wsgi accounts import FILE.csv`: upsert by external id, per-row errors with line
numbers, PAN-bearing rows refused and never stored or logged, `--dry-run` changes nothing."""

import logging

import sqlalchemy as sa

from ticketing.models import Account, AccountEvent, Customer, PaymentMethod

HEADER = "external_id,email,name,plan,status,card_brand,card_last4,card_exp_month,card_exp_year\n"
PAN = "4242 4242 4242 4242"


def write(tmp_path, body, name="accounts.csv"):
    path = tmp_path / name
    path.write_text(HEADER + body, encoding="utf-8")
    return str(path)


def dump_database(db_session) -> str:
    """Every value of every row of every table, as text (to prove a PAN is nowhere)."""
    from ticketing.db import Base

    chunks = []
    for table in Base.metadata.sorted_tables:
        for row in db_session.execute(sa.select(table)):
            chunks.append(" ".join(str(v) for v in row))
    return "\n".join(chunks)


def test_import_creates_and_updates_by_external_id(runner, db_session, tmp_path):
    path = write(
        tmp_path,
        "cus_1,Ann@Example.com,Ann's shop,pro,active,visa,4242,12,2026\n"
        "cus_2,bob@example.com,Bob,basic,active,mastercard,4444,1,27\n"
        "cus_3,cy@example.com,Cy,basic,active,,,,\n",
    )
    result = runner.invoke(args=["accounts", "import", path])
    assert result.exit_code == 0, result.output
    assert "3 rows: 3 created, 0 updated" in result.output
    ann = db_session.scalar(sa.select(Account).where(Account.external_id == "cus_1"))
    assert ann.customer.email == "ann@example.com"
    assert (ann.plan, ann.status, ann.name) == ("pro", "active", "Ann's shop")
    card = db_session.scalar(sa.select(PaymentMethod).where(PaymentMethod.account_id == ann.id))
    assert (card.brand, card.last4, card.exp_month, card.exp_year) == ("visa", "4242", 12, 2026)
    assert str(card.expires_on) == "2026-12-31"
    bob_card = db_session.scalar(
        sa.select(PaymentMethod).join(Account).where(Account.external_id == "cus_2")
    )
    assert bob_card.exp_year == 2027 and str(bob_card.expires_on) == "2027-01-31"
    assert db_session.scalar(sa.select(sa.func.count(PaymentMethod.id))) == 2

    # Again with a changed plan and a new card: updated in place, a card_updated event.
    path = write(tmp_path, "cus_1,ann@example.com,Ann's shop,enterprise,active,visa,1881,3,2030\n")
    result = runner.invoke(args=["accounts", "import", path])
    assert result.exit_code == 0, result.output
    assert "1 rows: 0 created, 1 updated, 1 cards changed" in result.output
    db_session.rollback()
    ann = db_session.scalar(sa.select(Account).where(Account.external_id == "cus_1"))
    assert ann.plan == "enterprise"
    cards = db_session.scalars(sa.select(PaymentMethod).where(PaymentMethod.account_id == ann.id))
    assert [(c.last4, c.exp_year) for c in cards] == [("1881", 2030)]
    events = db_session.scalars(sa.select(AccountEvent.kind)).all()
    assert events == ["card_updated"]
    assert db_session.scalar(sa.select(sa.func.count(Customer.id))) == 3


def test_bad_rows_are_reported_by_line_and_never_stop_good_ones(runner, db_session, tmp_path):
    path = write(
        tmp_path,
        "good_1,a@example.com,A,pro,active,visa,4242,12,2030\n"
        ",b@example.com,B,pro,active,,,,\n"  # line 3: no external id
        "bad_email,not-an-address,C,pro,active,,,,\n"  # line 4
        f"pan_row,d@example.com,D,pro,active,visa,{PAN},12,2030\n"  # line 5: a card number
        "bad_month,e@example.com,E,pro,active,visa,4242,13,2030\n"  # line 6
        "short_row,f@example.com\n"  # line 7
        "good_2,g@example.com,G,pro,active,amex,0005,6,2031\n",
    )
    result = runner.invoke(args=["accounts", "import", path])
    assert result.exit_code == 1
    output = result.output
    assert "line 3: external_id is required." in output
    assert "line 4: email is not a valid email address." in output
    assert "line 5: card_last4 looks like a full card number" in output
    assert "line 6: card_exp_month must be 1-12." in output
    assert "line 7: wrong number of fields" in output
    assert "7 rows: 2 created, 0 updated, 0 cards changed, 5 rejected" in output
    db_session.rollback()
    ids = db_session.scalars(sa.select(Account.external_id).order_by(Account.external_id)).all()
    assert ids == ["good_1", "good_2"]


def test_a_card_number_is_never_stored_or_logged(runner, db_session, tmp_path, caplog):
    path = write(
        tmp_path,
        f"cus_9,pan@example.com,Name {PAN},pro,active,visa,4242,12,2030\n"
        f"cus_10,x@example.com,X,pro,active,visa,4242,12,2030,\n"
        f'"{PAN.replace(" ", "")}",y@example.com,Y,pro,active,,,,\n',
    )
    with caplog.at_level(logging.DEBUG):
        result = runner.invoke(args=["accounts", "import", path])
    digits = PAN.replace(" ", "")
    assert "looks like a full card number" in result.output
    assert PAN not in result.output and digits not in result.output
    assert PAN not in caplog.text and digits not in caplog.text
    db_session.rollback()
    everything = dump_database(db_session)
    assert PAN not in everything and digits not in everything
    assert db_session.scalar(sa.select(sa.func.count(Account.id))) == 0


def test_dry_run_counts_and_changes_nothing(runner, db_session, tmp_path):
    path = write(
        tmp_path,
        "cus_1,a@example.com,A,pro,active,visa,4242,12,2030\ncus_2,nope,B,pro,active,,,,\n",
    )
    result = runner.invoke(args=["accounts", "import", path, "--dry-run"])
    assert result.exit_code == 1
    assert "Dry run: 2 rows: 1 created" in result.output
    assert "line 3: email is not a valid email address." in result.output
    db_session.rollback()
    assert db_session.scalar(sa.select(sa.func.count(Account.id))) == 0
    assert db_session.scalar(sa.select(sa.func.count(Customer.id))) == 0


def test_a_bad_header_is_refused_clearly(runner, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,mail\n1,a@example.com\n")
    result = runner.invoke(args=["accounts", "import", str(path)])
    assert result.exit_code != 0
    assert "missing external_id, email" in result.output


# -- the same records through POST /api/v1/accounts -------------------------------------------


def test_api_batch_upsert_with_per_item_errors(client, db_session, agent):
    from ticketing.db import utcnow
    from ticketing.services import api_tokens

    _, token = api_tokens.create_token(db_session, agent, name="billing sync", now=utcnow())
    db_session.commit()
    headers = {"Authorization": f"Bearer {token}"}
    body = {
        "accounts": [
            {
                "external_id": "cus_1",
                "email": "ann@example.com",
                "plan": "pro",
                "card_brand": "visa",
                "card_last4": "4242",
                "card_exp_month": 12,
                "card_exp_year": 2030,
            },
            {"external_id": "cus_2", "email": "bad"},
            {"external_id": "cus_3", "email": "c@example.com", "card_last4": 4242424242424242},
            {"external_id": "cus_4", "email": "d@example.com", "customer_id": 1},
            {  # "¹" passes str.isdigit() but is no month
                "external_id": "cus_5",
                "email": "e@example.com",
                "card_brand": "visa",
                "card_last4": "4242",
                "card_exp_month": "\u00b9",
                "card_exp_year": 2030,
            },
        ]
    }
    response = client.post("/api/v1/accounts", json=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    data = response.get_json()
    assert (data["created"], data["updated"]) == (1, 0)
    assert [e["index"] for e in data["errors"]] == [1, 2, 3, 4]
    assert "must be a number" in data["errors"][3]["message"]
    assert "looks like a full card number" in data["errors"][1]["message"]
    assert "unknown field(s): customer_id" in data["errors"][2]["message"]
    assert "4242424242424242" not in response.get_data(as_text=True)
    db_session.rollback()
    assert db_session.scalars(sa.select(Account.external_id)).all() == ["cus_1"]
    assert "4242424242424242" not in dump_database(db_session)

    body["accounts"][0]["plan"] = "enterprise"
    data = client.post("/api/v1/accounts", json=body, headers=headers).get_json()
    assert (data["created"], data["updated"]) == (0, 1)
    # No token: 401, nothing read.
    assert client.post("/api/v1/accounts", json=body).status_code == 401
    assert (
        client.post("/api/v1/accounts", json={"accounts": []}, headers=headers).status_code == 400
    )
