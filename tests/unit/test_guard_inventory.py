"""The guard's inventory (docs/guard-inventory.jsonl), its rules and its poison corpus agree, and
the tables generated from them (the README's rule table, docs/guard-inventory.md) are current."""

from __future__ import annotations

from pathlib import Path

import orjson

from tools import guard_tables
from warden.guard.rules import RULES

CORPUS = Path(__file__).resolve().parent.parent / "data" / "poison"


def corpus_sources(kind: str) -> set[str]:
    return {orjson.loads(line)["source"] for path in CORPUS.glob("*.jsonl")
            for line in path.read_text().splitlines() if line.strip()
            and orjson.loads(line)["kind"] == kind}


def test_every_row_names_a_rule_or_a_reason_and_every_rule_a_source():
    assert guard_tables.problems(RULES, guard_tables.load()) == []


def test_the_checks_find_what_is_wrong():
    row = guard_tables.Row("x#1", "t", "all", None, "tokens", "crash", "t", "no-such-rule", None)
    bare = guard_tables.Row("x#2", "t", "all", None, "nonsense", "crash", "t", None, "")
    found = guard_tables.problems(RULES[:1], [row, bare])
    assert found == ["x#1: no rule no-such-rule", "x#2: neither a rule nor a reason",
                     "x#2: unknown class nonsense",
                     f"rule {RULES[0].id} has no source in the inventory"]


def test_the_generated_tables_are_current():
    rows = guard_tables.load()
    readme = guard_tables.README.read_text()
    assert guard_tables.readme_with_table(readme, guard_tables.rule_table(RULES, rows)) \
        == readme, "the README's rule table is stale: python -m tools.guard_tables"
    assert guard_tables.INVENTORY_PAGE.read_text() == guard_tables.inventory_page(rows), \
        "docs/guard-inventory.md is stale: python -m tools.guard_tables"


def test_every_poison_request_of_the_corpus_has_its_row():
    known = {row.source for row in guard_tables.load()}
    assert sorted(corpus_sources("poison") - known) == []


def test_the_readme_counts_the_rules():
    assert f"({len(RULES)} rules, plus your own)" in guard_tables.README.read_text()
