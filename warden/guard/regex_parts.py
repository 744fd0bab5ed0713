"""The parts of a regular expression that regex_scan reads (branches, groups, atoms), and what
it concludes from them."""

from __future__ import annotations

from dataclasses import dataclass, field

from warden.guard import regex_sets
from warden.guard.regex_sets import Ranges


@dataclass
class Branch:
    start: int
    end: int = -1
    elements: int = 0
    required: int = 0            # elements that cannot match the empty string
    repeaters: int = 0           # elements that repeat without bound (or hold such a branch)
    required_repeaters: int = 0
    chars: Ranges | None = None  # its one element's characters, if that is one character

    @property
    def splittable(self) -> bool:
        """One element repeats without bound and all others may match nothing: a run it
        matches splits into repetitions of the branch in many ways."""
        return self.repeaters > 0 and (self.required == 0 or
                                       (self.required == 1 and self.required_repeaters == 1))


@dataclass
class Group:
    start: int                    # its "(" (-1: the whole pattern)
    kind: str                     # "capture", "plain" or "look"
    close: int = -1               # its ")"
    branches: list[Branch] = field(default_factory=list)
    separators: list[int] = field(default_factory=list)


@dataclass
class Atom:
    """One element of a branch: a character, a class, an escape, an anchor or a group."""

    start: int
    nullable: bool = False        # it may match the empty string
    repeats: bool = False         # it repeats without bound, or holds a branch that does
    chars: Ranges | None = None   # the one character it matches (None: more, or unknown)
    anchor: bool = False          # ^, $, \b: nothing to repeat
    group: Group | None = None
    quantified: bool = False
    quantifier: tuple[int, int, int] | None = None  # start, end of its count, end of modifier


def optional_count(count: str) -> str:
    """The count that repeats an alternation which lost its empty alternative as often."""
    if count in ("", "?"):
        return "?"
    if count in ("*", "+") or count.endswith(",}"):
        return "*"
    high = count[1:-1].rpartition(",")[2]
    return "{0," + high + "}"


def ambiguous(pattern: str, group: Group) -> bool:
    """Two alternatives of `group` match the same text: the same text, or one character
    each from overlapping sets."""
    texts = [pattern[b.start:b.end] for b in group.branches if b.elements]
    if len(set(texts)) < len(texts):
        return True
    sets = [b.chars for b in group.branches if b.chars is not None]
    return len(sets) > 1 and regex_sets.overlapping(sets)
