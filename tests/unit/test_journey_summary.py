"""The "Before writing in" sentences an agent reads, from a journey's events."""

from ticketing.models import JourneyEvent, JourneyEventKind
from ticketing.services.journeys import describe

K = JourneyEventKind
TITLES = {1: "Update your payment card", 2: "Refunds", 3: "Card declined"}


def event(kind: JourneyEventKind, **fields) -> JourneyEvent:
    return JourneyEvent(kind=kind, **fields)


def test_a_journey_reads_as_plain_sentences_in_order() -> None:
    steps = [
        event(K.SEARCH, query="card declined", result_count=2),
        event(K.SEARCH, query="Card Declined", result_count=2),  # the same search again
        event(K.SUGGESTIONS_SHOWN, article_ids=[1, 2]),
        event(K.SUGGESTIONS_SHOWN, article_ids=[1, 3]),
        event(K.ARTICLE_OPENED, article_id=1),
        event(K.ARTICLE_READ, article_id=1, seconds=12),
        event(K.ARTICLE_OPENED, article_id=1),
        event(K.ARTICLE_READ, article_id=1, seconds=40),
        event(K.ARTICLE_OPENED, article_id=2),
        event(K.VOTE, article_id=2, helpful=False),
        event(K.SEARCH, query="refund", result_count=1),
        event(K.SUBMITTED),
    ]
    assert describe(steps, TITLES) == [
        "Saw 3 suggested articles",
        "Searched 'card declined' (2 results)",
        "Read 'Update your payment card' for 40 s",
        "Opened 'Refunds'",
        "Voted 'Refunds' not helpful",
        "Searched 'refund' (1 result)",
    ]


def test_unknown_articles_long_reads_and_deflection() -> None:
    steps = [
        event(K.SEARCH, query="nothing", result_count=0),
        event(K.ARTICLE_OPENED, article_id=9),
        event(K.ARTICLE_READ, article_id=9, seconds=125),
        event(K.VOTE, article_id=9, helpful=True),
        event(K.DEFLECTED, article_id=9),
    ]
    assert describe(steps, {}) == [
        "Searched 'nothing' (0 results)",
        "Read 'article #9' for 2 min 5 s",
        "Voted 'article #9' helpful",
        "Said 'article #9' answered the question",
    ]


def test_an_empty_journey_says_nothing() -> None:
    assert describe([], TITLES) == []
