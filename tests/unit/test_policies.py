"""Policies: the shipped files, the schema's refusals, versions, the CLI check."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from faceapi.adapters.policy_files import load_policies, parse_policy
from faceapi.domain.policies import (
    HumanReview,
    Operation,
    Policy,
    PolicyError,
    ReviewMode,
    UnknownPolicy,
    WrongPolicyOperation,
)
from faceapi.entrypoints.cli.policies import policies as policies_cli

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "policies"


def good() -> dict[str, object]:
    return yaml.safe_load((SHIPPED / "identity_check.yaml").read_text())


def write(tmp_path: Path, name: str, data: dict[str, object]) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_the_five_shipped_policies_load_and_validate() -> None:
    loaded = load_policies(SHIPPED)
    assert set(loaded) >= {"login", "identity_check", "watchlist_search", "photo_tagging",
                           "dataset_cleaning"}
    assert loaded["login"].lockout is not None
    assert loaded["login"].lockout.failures == 5
    assert not loaded["login"].consequential
    assert loaded["identity_check"].human_review.mode is ReviewMode.ALWAYS
    assert loaded["watchlist_search"].human_review.reviewers == 2
    assert loaded["dataset_cleaning"].min_similarity == 80
    assert loaded["dataset_cleaning"].human_review.mode is ReviewMode.BAND
    assert "Pose" in loaded["photo_tagging"].attributes


def test_every_consequential_shipped_policy_requires_review_always() -> None:
    for policy in load_policies(SHIPPED).values():
        if policy.consequential:
            assert policy.human_review.mode is ReviewMode.ALWAYS


def test_a_consequential_policy_without_review_always_is_refused_naming_the_field() -> None:
    data = good()
    data["human_review"] = {"mode": "never"}
    with pytest.raises(PolicyError, match=r"human_review\.mode"):
        parse_policy(yaml.safe_dump(data), "identity_check.yaml", "identity_check")


def test_a_consequential_search_with_one_reviewer_is_refused() -> None:
    data = yaml.safe_load((SHIPPED / "watchlist_search.yaml").read_text())
    data["human_review"]["reviewers"] = 1
    with pytest.raises(PolicyError, match=r"human_review\.reviewers"):
        parse_policy(yaml.safe_dump(data), "w.yaml", "watchlist_search")


@pytest.mark.parametrize(("change", "field"), [
    ({"min_similarity": 101}, "min_similarity"),
    ({"operation": "identify"}, "operation"),
    ({"colour": "blue"}, "colour"),
    ({"max_faces": 2}, "max_faces"),
    ({"quality": {"max_yaw": "lots"}}, "quality.max_yaw"),
    ({"attributes": ["Age"]}, "attributes"),
    ({"template_scoring": "average"}, "template_scoring"),
])
def test_a_bad_field_stops_the_load_and_the_message_names_it(change: dict[str, object],
                                                              field: str) -> None:
    data = {**good(), **change}
    with pytest.raises(PolicyError) as caught:
        parse_policy(yaml.safe_dump(data), "identity_check.yaml", "identity_check")
    assert field in caught.value.message
    assert "identity_check.yaml" in caught.value.message


def test_a_band_must_contain_the_threshold() -> None:
    data = yaml.safe_load((SHIPPED / "dataset_cleaning.yaml").read_text())
    data["human_review"]["band"] = [90, 95]
    with pytest.raises(PolicyError, match=r"human_review\.band"):
        parse_policy(yaml.safe_dump(data), "d.yaml", "dataset_cleaning")


def test_the_file_name_must_match_the_policy_name(tmp_path: Path) -> None:
    write(tmp_path, "other", good())
    with pytest.raises(PolicyError, match="name"):
        load_policies(tmp_path)


def test_invalid_yaml_is_reported_with_the_file_name(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(PolicyError, match=r"broken\.yaml"):
        load_policies(tmp_path)


def test_a_policy_built_in_code_cannot_be_consequential_without_review() -> None:
    with pytest.raises(PolicyError, match="consequential"):
        Policy(name="x", description="x", operation=Operation.VERIFY, consequential=True,
               min_similarity=80, human_review=HumanReview(mode=ReviewMode.NEVER))


def test_the_version_is_stable_and_changes_with_any_rule() -> None:
    a = parse_policy((SHIPPED / "login.yaml").read_text(), "login.yaml", "login")
    b = parse_policy((SHIPPED / "login.yaml").read_text() + "\n# a comment\n", "l", "login")
    assert a.version == b.version
    assert len(a.version) == 64
    data = yaml.safe_load((SHIPPED / "login.yaml").read_text())
    data["min_similarity"] = data["min_similarity"] + 0.5
    assert parse_policy(yaml.safe_dump(data), "l", "login").version != a.version


def test_require_refuses_unknown_names_and_the_wrong_operation() -> None:
    loaded = load_policies(SHIPPED)
    with pytest.raises(UnknownPolicy):
        loaded.require("no_such_policy")
    with pytest.raises(WrongPolicyOperation):
        loaded.require("photo_tagging", Operation.VERIFY)
    assert loaded.require("login", Operation.VERIFY).name == "login"


def test_policies_check_passes_the_shipped_files_and_fails_a_bad_one(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(policies_cli, ["check", str(SHIPPED)])
    assert ok.exit_code == 0, ok.output
    assert "login" in ok.output
    data = good()
    data["consequential"] = "perhaps"
    bad = write(tmp_path, "identity_check", data)
    failed = runner.invoke(policies_cli, ["check", str(bad)])
    assert failed.exit_code == 1
    assert "consequential" in failed.output


def test_policies_check_and_show_fail_cleanly_on_unreadable_files_and_unknown_names(
        tmp_path: Path) -> None:
    runner = CliRunner()
    binary = tmp_path / "login.yaml"
    binary.write_bytes(b"\xff\xfe name: login")
    failed = runner.invoke(policies_cli, ["check", str(binary)])
    assert failed.exit_code == 1
    assert isinstance(failed.exception, SystemExit), failed.exception
    assert "cannot be read (not UTF-8 text)" in failed.output
    unknown = runner.invoke(policies_cli, ["show", "no_such_policy"],
                            env={"FACEAPI_POLICIES_DIR": str(SHIPPED)})
    assert unknown.exit_code == 1
    assert isinstance(unknown.exception, SystemExit), unknown.exception
    assert "no_such_policy" in unknown.output


def test_only_a_verify_policy_may_fuse_templates() -> None:
    data = yaml.safe_load((SHIPPED / "watchlist_search.yaml").read_text())
    data["template_scoring"] = "fused"
    with pytest.raises(PolicyError, match="template_scoring"):
        parse_policy(yaml.safe_dump(data), "w.yaml", "watchlist_search")


def test_a_best_of_policy_keeps_the_version_it_had_before_template_scoring_existed() -> None:
    """Decisions record policy versions: adding the field must not re-version every
    policy that does not use it, and saying the default out loud changes nothing."""
    data = good()
    implicit = parse_policy(yaml.safe_dump(data), "i.yaml", "identity_check")
    explicit = parse_policy(yaml.safe_dump({**data, "template_scoring": "best_of"}),
                            "i.yaml", "identity_check")
    assert "template_scoring" not in implicit.canonical()
    assert explicit.version == implicit.version
    fused = parse_policy(yaml.safe_dump({**data, "template_scoring": "fused"}),
                         "i.yaml", "identity_check")
    assert fused.canonical()["template_scoring"] == "fused"
    assert fused.version != implicit.version


def test_login_fuses_the_subjects_enrolled_faces() -> None:
    loaded = load_policies(SHIPPED)
    assert loaded["login"].template_scoring.value == "fused"
    assert loaded["login_liveness"].template_scoring.value == "fused"


@pytest.mark.parametrize("field", ["description", "issuer"])
def test_a_nul_in_a_policys_text_is_refused_by_the_check_naming_the_field(
        tmp_path: Path, field: str) -> None:
    # YAML's "\0" escape is a NUL; the canonical text of every loaded policy is written to
    # PostgreSQL at start-up, which cannot store one: the check must catch it first.
    data = yaml.safe_load((SHIPPED / "login_liveness.yaml").read_text())
    if field == "description":
        data["description"] = "a\x00b"
    else:
        data["liveness"]["issuers"] = ["vendor\x00"]
    bad = write(tmp_path, "login_liveness", data)
    assert "\x00" not in bad.read_text()  # the file is text: the NUL is YAML's escape
    failed = CliRunner().invoke(policies_cli, ["check", str(bad)])
    assert failed.exit_code == 1, failed.output
    assert "NUL" in failed.output
    assert ("description" if field == "description" else "liveness.issuers") in failed.output
