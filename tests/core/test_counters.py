"""core.counters: named statistics, and the one update-else-create every counting row uses."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.db.models import F
from django.db.models.functions import Greatest
from django.db.models.query import QuerySet
from django.utils import timezone

from core.counters import counter_add, counters_get, row_add, row_upsert
from core.models import Counter
from faces.models import EngineCall

pytestmark = pytest.mark.django_db


def test_named_counters_add_up_and_an_unknown_name_reads_zero():
    counter_add("stats:a")
    counter_add("stats:a", 4)
    assert counters_get(["stats:a", "stats:never"]) == {"stats:a": 5, "stats:never": 0}


def test_row_add_creates_the_row_at_the_amount_then_adds_to_it():
    row_add(Counter, key={"name": "n"}, field="value", amount=3)
    row_add(Counter, key={"name": "n"}, field="value", amount=4)
    row_add(Counter, key={"name": "other"}, field="value")
    assert dict(Counter.objects.values_list("name", "value")) == {"n": 7, "other": 1}


def test_row_add_keys_on_several_fields_and_sets_the_extra_columns_on_update():
    key = {"engine": "rekognition", "operation": "search_faces"}
    row_add(EngineCall, key=key, field="count", amount=2)
    EngineCall.objects.filter(**key).update(updated_at=timezone.now() - timedelta(days=1))

    later = timezone.now() + timedelta(hours=1)
    row_add(EngineCall, key=key, field="count", also={"updated_at": later})
    row_add(EngineCall, key={**key, "operation": "index_faces"}, field="count")

    call = EngineCall.objects.get(**key)
    assert (call.count, call.updated_at) == (3, later)  # an UPDATE alone would not touch it
    assert EngineCall.objects.get(engine="rekognition", operation="index_faces").count == 1


def test_row_upsert_runs_any_expression_on_the_existing_row():
    def raise_to(n: int) -> None:
        row_upsert(
            Counter, key={"name": "through"}, update={"value": Greatest(F("value"), n)},
            create={"value": n},
        )  # fmt: skip

    raise_to(10)
    raise_to(4)
    assert Counter.objects.get(name="through").value == 10
    raise_to(12)
    assert Counter.objects.get(name="through").value == 12


def test_losing_the_race_to_create_adds_to_the_row_the_winner_made(monkeypatch):
    """Two processes both find no row; the second one's INSERT hits the key, so it adds to the
    first one's row instead of failing or dropping its count."""
    Counter.objects.create(name="n", value=5)  # the winner's row
    real_update = QuerySet.update
    updates: list[dict] = []

    def update_as_if_before_the_winner_inserted(self, **kwargs):
        updates.append(kwargs)
        return 0 if len(updates) == 1 else real_update(self, **kwargs)

    monkeypatch.setattr(QuerySet, "update", update_as_if_before_the_winner_inserted)
    row_add(Counter, key={"name": "n"}, field="value", amount=2)

    assert len(updates) == 2
    assert Counter.objects.get(name="n").value == 7


def test_a_create_that_fails_for_another_reason_raises_instead_of_dropping():
    with pytest.raises(IntegrityError):
        row_upsert(
            Counter, key={"name": "n"}, update={"value": F("value") + 1}, create={"value": None}
        )
    assert not Counter.objects.filter(name="n").exists()
