"""What users read from the code carries none of the project's internal jargon (the README's
rule, tests/unit/test_readme.py): the guard rules' descriptions and sources (a rejection's
message quotes them), the simulator's crash triggers (its 500 and log name them), every
command's `--help`, and the README bundled with an exported incident."""

from __future__ import annotations

import argparse

import pytest

from tests.unit.test_readme import ALLOWED, JARGON
from warden import cli
from warden.audit.report import BUNDLE_README
from warden.guard.rules import RULES
from warden.sim.crashes import TRIGGERS


def helps(parser: argparse.ArgumentParser) -> list[str]:
    """The `--help` text of a parser and of every command under it."""
    texts = [parser.format_help()]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                texts += helps(sub)
    return texts


def jargon(text: str) -> list[str]:
    return [line for line in text.splitlines() if JARGON.search(ALLOWED.sub("", line))]


def test_every_help_text_is_seen():
    texts = helps(cli._parser())
    assert len(texts) >= 20  # the commands and their subcommands
    assert any("--crash-trigger" in text for text in texts)


USER_TEXTS = {
    **{f"rule {r.id}": f"{r.description}\n{r.source}" for r in RULES},
    **{f"trigger {t.name}": t.description for t in TRIGGERS.values()},
    **{f"help: {text.split(chr(10))[0]}": text for text in helps(cli._parser())},
    "incident bundle": BUNDLE_README,
}


@pytest.mark.parametrize("name", sorted(USER_TEXTS))
def test_no_internal_jargon(name):
    assert jargon(USER_TEXTS[name]) == []


def test_the_crash_trigger_help_names_the_triggers():
    sim = next(text for text in helps(cli._parser()) if text.startswith("usage: warden sim"))
    assert all(name in " ".join(sim.split()) for name in TRIGGERS)
