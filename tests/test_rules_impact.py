"""``govern rules impact``: two rule revisions that differ in one rule, an instance with several deployments, and
exactly the deployments that one rule's change affects, with the rule named."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from .conftest import ROOT, TEST_REGULATIONS

pytestmark = pytest.mark.both_databases

#: The rule the tests change: the CAC filing duty of a generative service offered to the public.
RULE = "cac.genai.public_service_filing"
RULE_FILE = "cac_genai_measures_2023.yaml"


def _copy_rules(target: Path) -> Path:
    """A copy of the rule files (the test copy of regulations/, whose gate policies fit the test bank)."""
    shutil.copytree(TEST_REGULATIONS, target)
    return target


def _edit_rule(regulations: Path, change) -> None:
    """Apply ``change`` to the one rule RULE in its file."""
    path = regulations / RULE_FILE
    tree = yaml.safe_load(path.read_text(encoding="utf-8"))
    [rule] = [r for r in tree["rules"] if r["id"] == RULE]
    change(rule)
    path.write_text(yaml.safe_dump(tree, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _drop_filing_obligation(rule: dict) -> None:
    assert "genai_filing" in rule["then"]["obligations"]
    rule["then"]["obligations"] = [o for o in rule["then"]["obligations"] if o != "genai_filing"]


def _public_facing_is_enough(rule: dict) -> None:
    """The condition no longer asks that the service be generative."""
    rule["when"] = {"all": [{"field": "public_facing", "equals": True}]}


@pytest.fixture
def deployments(factory) -> dict[str, int]:
    """Five deployments; only generative public-facing ones meet RULE's condition."""
    made = {
        "internal_admin": factory.deployment("administrative_assistant"),
        "emr": factory.deployment("emr_generation"),
        "public_assistant": factory.deployment("public_generative_health_assistant"),
        "public_admin": factory.deployment("administrative_assistant", public_facing=True),
        "public_non_generative": factory.deployment("administrative_assistant", public_facing=True, generative=False),
    }
    return {key: deployment.id for key, deployment in made.items()}


def _impact(runner, *args: str) -> dict:
    result = runner.invoke("rules", "impact", *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_a_changed_outcome_lists_exactly_the_deployments_it_fires_for(runner, deployments, tmp_path):
    before = _copy_rules(tmp_path / "before")
    after = _copy_rules(tmp_path / "after")
    _edit_rule(after, _drop_filing_obligation)

    report = _impact(runner, "--from", str(before), "--to", str(after))

    assert report["deployments"] == 5 and report["unchanged"] == 3 and report["errors"] == []
    changed = {row["deployment_id"]: row for row in report["changed"]}
    assert set(changed) == {deployments["public_assistant"], deployments["public_admin"]}
    for row in changed.values():
        assert row["changes"] == {"obligations": {"added": [], "removed": ["genai_filing"]}}
        assert [(r["rule_id"], r["change"]) for r in row["rules"]] == [(RULE, "outcome_changed")]
        assert "genai_filing" in row["rules"][0]["from"] and "genai_filing" not in row["rules"][0]["to"]
    assert report["from"]["rules_digest"] != report["to"]["rules_digest"]

    text = runner.invoke("rules", "impact", "--from", str(before), "--to", str(after))
    assert text.exit_code == 0, text.output
    assert RULE in text.output and "2 changed, 3 unchanged" in text.output


def test_identical_rule_sets_change_nothing_and_exit_zero(runner, deployments, tmp_path):
    rules = _copy_rules(tmp_path / "rules")
    report = _impact(runner, "--from", str(rules), "--to", str(rules))
    assert report["changed"] == [] and report["unchanged"] == 5


def test_git_revisions_are_read_without_touching_the_work_tree(runner, deployments, tmp_path):
    repository = tmp_path / "repository"
    _copy_rules(repository / "regulations")
    shutil.copytree(ROOT / "checklists", repository / "checklists")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(repository), *args], check=True, capture_output=True,
                              text=True).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=Test", "-c", "user.email=test@test.hospital", "commit", "-q", "-m", "rules as shipped")
    _edit_rule(repository / "regulations", _public_facing_is_enough)
    git("-c", "user.name=Test", "-c", "user.email=test@test.hospital", "commit", "-q", "-a", "-m", "one rule")
    (repository / "regulations" / RULE_FILE).write_text("not: [a rule file", encoding="utf-8")  # a dirty work tree

    report = _impact(runner, "--repository", str(repository), "--from", "HEAD~1", "--to", "HEAD")

    [row] = report["changed"]
    assert row["deployment_id"] == deployments["public_non_generative"]
    assert row["changes"]["obligations"]["added"] == ["genai_filing", "transparency_disclosure"]
    assert [(r["rule_id"], r["change"]) for r in row["rules"]] == [(RULE, "only_in_to")]
    assert report["from"]["revision"] == "HEAD~1" and len(report["from"]["commit"]) == 40


def test_an_invalid_rule_file_is_a_one_line_error(runner, deployments, tmp_path):
    good = _copy_rules(tmp_path / "good")
    broken = _copy_rules(tmp_path / "broken")
    _edit_rule(broken, lambda rule: rule["then"].update(obligations=["no_such_obligation"]))

    result = runner.invoke("rules", "impact", "--from", str(good), "--to", str(broken))

    assert result.exit_code != 0
    message = (result.stderr if hasattr(result, "stderr") and result.stderr else result.output).strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert RULE_FILE in message and "no_such_obligation" in message


def test_a_revision_that_is_neither_a_folder_nor_a_commit_is_a_one_line_error(runner, deployments, tmp_path):
    rules = _copy_rules(tmp_path / "rules")
    result = runner.invoke("rules", "impact", "--repository", str(ROOT), "--from", "no-such-revision-xyz",
                           "--to", str(rules))
    assert result.exit_code != 0
    message = (result.stderr if hasattr(result, "stderr") and result.stderr else result.output).strip()
    assert len(message.splitlines()) == 1 and "no-such-revision-xyz" in message


def test_the_json_shape_is_documented_in_the_help(runner):
    result = runner.invoke("rules", "impact", "--help")
    assert result.exit_code == 0
    for key in ("deployments", "unchanged", "changed", "deployment_id", "changes", "rules", "rule_id",
                "only_in_from", "only_in_to", "outcome_changed", "errors"):
        assert key in result.output


def test_stored_classifications_are_compared_with_the_deployed_rules(factory, session, tmp_path):
    """After an upgrade: each deployment's latest classification (under the rules then in force, named by its
    stored digest) against its descriptor reclassified under the deployed rules."""
    from governance import queries
    from governance.classification.rules import load_ruleset

    public = factory.drive(factory.submission("public_generative_health_assistant"), "classified")
    internal = factory.drive(factory.submission("administrative_assistant"), "classified")
    same = load_ruleset(TEST_REGULATIONS)
    assert queries.rules_impact_since_classified(session, same) == []

    upgraded = _copy_rules(tmp_path / "upgraded")
    _edit_rule(upgraded, _drop_filing_obligation)
    [row] = queries.rules_impact_since_classified(session, load_ruleset(upgraded))

    assert row["deployment"].id == public.deployment_id != internal.deployment_id
    assert row["changes"] == {"obligations": {"added": [], "removed": ["genai_filing"]}}
    assert [r["rule_id"] for r in row["rules"]] == [RULE]


def test_the_compliance_page_shows_the_impact_after_an_upgrade(factory, database_url, tmp_path):
    from governance.db import get_db

    from .conftest import make_app
    from .factories import PASSWORD

    public = factory.drive(factory.submission("public_generative_health_assistant"), "classified")
    factory.drive(factory.submission("administrative_assistant"), "classified")
    compliance = factory.person("compliance")
    upgraded = _copy_rules(tmp_path / "upgraded")
    _edit_rule(upgraded, _drop_filing_obligation)
    (tmp_path / "upgraded-instance").mkdir()
    upgraded_app = make_app(tmp_path / "upgraded-instance", database_url, regulations_dir=upgraded)
    client = upgraded_app.test_client()
    client.post("/login", data={"email": compliance.email, "password": PASSWORD})

    page = client.get("/registry/rules-impact")
    get_db(upgraded_app).dispose()

    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert f"/deployments/{public.deployment_id}" in text and RULE in text and "genai_filing" in text
    assert text.count('class="impact-row"') == 1
