"""Regulatory change impact: what a change of the rule files does to deployments already registered.

Two classifier results of one deployment are compared on what a committee acts on (the China / US / EU status,
the pathway, the obligations, prohibition and expert re-examination); a difference is explained by the rules
that fired under one rule set and not the other, or whose outcome changed. Rule sets come from a folder or from
a git revision, read with ``git show`` into a temporary folder so that the work tree is never touched.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataFileError, GovernanceError

#: The folders of a revision that hold the data files (read at the revision, top level only, *.yaml).
DATA_FOLDERS = ("regulations", "checklists")


@dataclass(frozen=True)
class RuleSource:
    """Where one side's rule files are: ``commit`` is set when they were read from a git revision."""

    revision: str
    regulations_dir: Path
    checklists_dir: Path | None
    commit: str | None = None


def outcome(result: dict[str, Any]) -> dict[str, Any]:
    """The parts of a classification a committee acts on (the rule trail and wording are left out)."""
    return {
        "nmpa": {key: result["nmpa"][key] for key in ("status", "class", "catalogue", "review_as_class")},
        "fda_cds": result["fda_cds"]["status"],
        "eu_mdr": {key: result["eu_mdr"][key] for key in ("status", "class")},
        # results stored before the IVDR fact existed have no "eu_ivdr": they read as non-device
        "eu_ivdr": (result.get("eu_ivdr") or {}).get("status", "non_device"),
        "eu_ai_act_high_risk": result["eu_ai_act"]["high_risk"],
        "pathway": result["pathway"],
        "prohibited": result["prohibited"],
        "expert_reexamination": result["expert_reexamination"],
        "obligations": sorted(o["id"] for o in result["obligations"]),
    }


def outcome_changes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What differs between two results: ``{part: {"from": .., "to": ..}}``, obligations as added/removed ids."""
    old, new = outcome(before), outcome(after)
    changes: dict[str, Any] = {}
    for part in old:
        if old[part] == new[part]:
            continue
        if part == "obligations":
            changes[part] = {"added": sorted(set(new[part]) - set(old[part])),
                             "removed": sorted(set(old[part]) - set(new[part]))}
        else:
            changes[part] = {"from": old[part], "to": new[part]}
    return changes


def responsible_rules(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules that fired in one result only, or in both with a different outcome (or a different override)."""
    old = {entry["rule_id"]: entry for entry in before["rule_trail"]}
    new = {entry["rule_id"]: entry for entry in after["rule_trail"]}
    named = []
    for rule_id in [*old, *(r for r in new if r not in old)]:
        was, now = old.get(rule_id), new.get(rule_id)
        if was is None:
            change = "only_in_to"
        elif now is None:
            change = "only_in_from"
        elif (was["outcome"], was.get("overridden")) != (now["outcome"], now.get("overridden")):
            change = "outcome_changed"
        else:
            continue
        named.append({"rule_id": rule_id, "change": change, "from": _described(was), "to": _described(now),
                      "source": (now or was)["source"], "file": (now or was)["file"]})
    return named


def _described(entry: dict[str, Any] | None) -> str | None:
    if entry is None:
        return None
    overridden = entry.get("overridden")
    return entry["outcome"] + (f" (overridden: {', '.join(overridden)})" if overridden else "")


def compare(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any] | None:
    """The impact on one deployment, or None when nothing a committee acts on changed."""
    changes = outcome_changes(before, after)
    if not changes:
        return None
    return {"changes": changes, "rules": responsible_rules(before, after)}


@contextmanager
def rule_source(revision: str, repository: Path) -> Iterator[RuleSource]:
    """The rule files of ``revision``: a folder (holding the rule files, or a ``regulations/`` folder beside a
    ``checklists/`` one), else a git revision of ``repository``, copied blob by blob into a temporary folder.
    Data-file errors raised while the block runs name the file as ``REVISION:regulations/NAME``."""
    folder = Path(revision)
    if folder.is_dir():
        if (folder / "regulations").is_dir():
            checklists = folder / "checklists"
            yield RuleSource(revision, folder / "regulations", checklists if checklists.is_dir() else None)
        else:
            yield RuleSource(revision, folder, None)
        return
    commit = _resolve_commit(revision, repository)
    with tempfile.TemporaryDirectory(prefix="governance-rules-") as scratch:
        root = Path(scratch)
        for name in DATA_FOLDERS:
            _export_folder(repository, commit, name, root / name)
        if not any((root / "regulations").glob("*.yaml")):
            raise GovernanceError(f"revision '{revision}' has no rule files (regulations/*.yaml)")
        try:
            yield RuleSource(revision, root / "regulations", root / "checklists", commit)
        except DataFileError as exc:
            raise DataFileError(exc.path.replace(f"{root}/", f"{revision}:"), exc.line, exc.key,
                                exc.message) from None


def _git(repository: Path, *args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["git", "-C", str(repository), *args], capture_output=True, timeout=60)
    except FileNotFoundError:
        raise GovernanceError("git is not installed: give folders of rule files instead of revisions") from None


def _resolve_commit(revision: str, repository: Path) -> str:
    found = None if revision.startswith("-") else _git(repository, "rev-parse", "--verify", "--quiet",
                                                       f"{revision}^{{commit}}")
    if found is None or found.returncode != 0:
        raise GovernanceError(f"'{revision}' is neither a folder nor a revision of the git repository {repository}")
    return found.stdout.decode().strip()


def _export_folder(repository: Path, commit: str, name: str, target: Path) -> None:
    """Write ``name/*.yaml`` as they are at ``commit`` (``git ls-tree``, then ``git show COMMIT:PATH``)."""
    target.mkdir()
    listed = _git(repository, "ls-tree", "-z", commit, "--", f"{name}/")
    if listed.returncode != 0:
        raise GovernanceError(f"cannot list {name}/ at {commit}: {listed.stderr.decode().strip()}")
    for record in filter(None, listed.stdout.decode().split("\0")):
        meta, _, path = record.partition("\t")
        if meta.split()[1] != "blob" or not path.endswith(".yaml"):
            continue
        shown = _git(repository, "show", f"{commit}:{path}")
        if shown.returncode != 0:
            raise GovernanceError(f"cannot read {path} at {commit}: {shown.stderr.decode().strip()}")
        (target / Path(path).name).write_bytes(shown.stdout)
