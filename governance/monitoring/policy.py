"""Monitoring settings read from ``regulations/monitoring.yaml``."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from .. import datafiles, domain
from ..datafiles import FROM_STRING, StrictModel
from ..sources import Source

FILE_NAME = "monitoring.yaml"


class Interval(StrictModel):
    pathway: Literal["full_board", "ai_subcommittee"]
    review_class: Literal["none", "II", "III"]
    months: int = Field(ge=1, le=12)


class ContinuingReview(StrictModel):
    default_months: int = Field(ge=1, le=12)
    by_pathway_and_class: list[Interval] = []
    reminder_days_before: list[int] = Field(min_length=1)
    expire_after_days: int = Field(ge=1)


Severity = Annotated[domain.Severity, FROM_STRING]


class Reaudit(StrictModel):
    interval_days: int = Field(ge=1)
    regression_incident_severity: Severity = "moderate"
    integrity_incident_severity: Severity = "serious"


class AdverseEventReport(StrictModel):
    severities: list[Severity] = []
    when_patient_harmed: bool = True
    report_within_days: dict[Severity, int] = {}


class Incidents(StrictModel):
    suspend_severities: list[Severity] = ["serious", "critical"]
    adverse_event_report: AdverseEventReport = AdverseEventReport()


class MonitoringPolicy(StrictModel):
    id: Literal["monitoring"]
    version: str
    continuing_review: ContinuingReview
    reaudit: Reaudit
    incidents: Incidents = Incidents()
    sources: list[Source] = []


@lru_cache(maxsize=4)
def _load(path: Path, stamp: float) -> MonitoringPolicy:
    return datafiles.load(path, MonitoringPolicy)


def load_monitoring(regulations_dir: Path) -> MonitoringPolicy:
    path = regulations_dir / FILE_NAME
    if not path.exists():
        raise datafiles.DataFileError(path, None, None, "monitoring settings file is missing")
    return _load(path, path.stat().st_mtime)


def continuing_review_months(regulations_dir: Path, pathway: str | None, review_class: str | None) -> int:
    policy = load_monitoring(regulations_dir).continuing_review
    wanted = review_class or "none"
    for interval in policy.by_pathway_and_class:
        if interval.pathway == pathway and interval.review_class == wanted:
            return interval.months
    return policy.default_months
