"""Committee rules (quorum, eligibility, thresholds), read from ``regulations/committees.yaml``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from . import datafiles
from .datafiles import FROM_STRING, StrictModel
from .domain import Pathway, Role
from .sources import Source, Text

FILE_NAME = "committees.yaml"


class Quorum(StrictModel):
    min_present: int = Field(ge=1)
    min_non_scientists: int = Field(ge=0)
    min_external: int = Field(ge=0)


class FullBoardRules(StrictModel):
    title: Text
    eligible_roles: list[Annotated[Role, FROM_STRING]]
    quorum: Quorum
    #: Share of eligible members present whose votes an outcome needs.
    approval_threshold: Literal["majority", "two_thirds"]
    sources: list[Source]


class FastTrackRules(StrictModel):
    title: Text
    eligible_roles: list[Annotated[Role, FROM_STRING]]
    min_reviewers: int = Field(ge=1)
    #: Fast-track reviewers may not disapprove; a negative or divergent opinion escalates.
    can_disapprove: Literal[False]
    sources: list[Source]


class CommitteeRules(StrictModel):
    id: Literal["committees"]
    version: str
    full_board: FullBoardRules
    ai_subcommittee: FastTrackRules

    def eligible_roles(self, pathway: str) -> set[str]:
        rules = self.full_board if pathway == Pathway.FULL_BOARD else self.ai_subcommittee
        return {r.value for r in rules.eligible_roles}


def threshold_met(votes_for: int, eligible_present: int, threshold: str) -> bool:
    if eligible_present == 0:
        return False
    if threshold == "two_thirds":
        return 3 * votes_for >= 2 * eligible_present
    return 2 * votes_for > eligible_present


@lru_cache(maxsize=8)
def _load(path: Path, mtime: float) -> CommitteeRules:
    return datafiles.load(path, CommitteeRules)


def load_committee_rules(regulations_dir: Path) -> CommitteeRules:
    path = regulations_dir / FILE_NAME
    if not path.exists():
        raise datafiles.DataFileError(path, None, None, "committee rules file is missing")
    return _load(path, path.stat().st_mtime)
