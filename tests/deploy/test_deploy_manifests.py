"""deploy/ is checked offline, with no Docker engine or cluster: every Kubernetes manifest
against the Kubernetes schemas (kubernetes-validate bundles them), the compose file against
the Compose Specification JSON schema (vendored in check-jsonschema, Apache-2.0), and the
Dockerfile for a non-root USER and a HEALTHCHECK."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = sorted(K8S.rglob("kustomization.yaml"))
# The oldest Kubernetes version we support; the schemas ship inside the package.
K8S_VERSION = "1.30.0"


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _resources() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _listed(kustomization: Path) -> list[Path]:
    doc = _documents(kustomization)[0]
    names = list(doc.get("resources", [])) + [p["path"] for p in doc.get("patches", [])]
    return [(kustomization.parent / name).resolve() for name in names]


@pytest.mark.parametrize("manifest", _resources(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_kubernetes_manifest_is_valid_against_the_schemas(manifest: Path) -> None:
    docs = _documents(manifest)
    assert docs
    for doc in docs:
        if manifest.parent.name != "base":  # a strategic-merge patch: only check its kind
            assert doc["kind"]
            assert doc["metadata"]["name"]
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS,
                         ids=lambda p: str(p.parent.relative_to(K8S)))
def test_each_kustomization_lists_existing_files_and_every_base_file_is_listed(
        kustomization: Path) -> None:
    listed = _listed(kustomization)
    assert listed
    assert [p for p in listed if not p.exists()] == []
    if kustomization.parent.name == "base":
        on_disk = {p.resolve() for p in kustomization.parent.glob("*.yaml")}
        assert on_disk - {kustomization.resolve()} == set(listed)


def _base_kinds() -> dict[str, list[dict[str, Any]]]:
    kinds: dict[str, list[dict[str, Any]]] = {}
    for path in _listed(K8S / "base" / "kustomization.yaml"):
        for doc in _documents(path):
            kinds.setdefault(doc["kind"], []).append(doc)
    return kinds


def _pod_specs(kinds: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    specs = [d["spec"]["template"]["spec"] for d in kinds["Deployment"] + kinds["Job"]]
    specs += [d["spec"]["jobTemplate"]["spec"]["template"]["spec"] for d in kinds["CronJob"]]
    return specs


def test_the_base_has_every_piece_a_production_deployment_needs() -> None:
    kinds = _base_kinds()
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "Job", "CronJob",
                 "PodDisruptionBudget", "NetworkPolicy", "Secret"):
        assert kind in kinds, kind
    api = kinds["Deployment"][0]["spec"]["template"]["spec"]["containers"][0]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["resources"]["requests"]["memory"]
    scheduled = {" ".join(d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
                          ["command"]) for d in kinds["CronJob"]}
    assert {"faceapi reviews sweep", "faceapi retention run"} <= scheduled
    for secret in kinds["Secret"]:  # templates only: nothing that looks like a real key
        for value in secret["stringData"].values():
            assert "PLACEHOLDER" in value
            assert "BEGIN" not in value


def test_every_container_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    for spec in _pod_specs(_base_kinds()):
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts


def test_production_keys_are_mounted_from_outside_the_data_directory() -> None:
    for spec in _pod_specs(_base_kinds()):
        for container in spec["containers"]:
            env = {e["name"]: e.get("value") for e in container["env"]}
            if env.get("FACEAPI_DATA_DIR") != "/data":
                continue  # the migration job opens no key
            for setting in ("FACEAPI_AUDIT_SIGNING_KEY", "FACEAPI_CREDENTIALS_KEY_FILE",
                            "FACEAPI_SECRET_KEY_FILE"):
                assert env[setting].startswith("/run/secrets/"), setting


def _compose_schema() -> dict[str, Any]:
    vendored = files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json")
    schema: dict[str, Any] = json.loads(vendored.read_text(encoding="utf-8"))
    return schema


def test_the_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = _compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in validator.iter_errors(_documents(DEPLOY / "compose.yaml")[0])]
    assert errors == []


def test_the_compose_schema_check_catches_a_broken_file() -> None:
    schema = _compose_schema()
    broken = {"services": {"api": {"image": "faceapi", "depends_on": {"db": {"condition": 3}}}}}
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_compose_runs_the_migration_the_api_the_sweeper_and_documents_the_first_key() -> None:
    services = _documents(DEPLOY / "compose.yaml")[0]["services"]
    assert {"db", "redis", "migrate", "api", "sweeper", "bootstrap"} <= set(services)
    assert "faceapi db upgrade" in " ".join(services["migrate"]["command"])
    assert "faceapi reviews sweep" in " ".join(services["sweeper"]["command"])
    assert "faceapi retention run" in " ".join(services["sweeper"]["command"])
    assert "faceapi keys bootstrap" in " ".join(services["bootstrap"]["command"])
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    api_waits_for = services["api"]["depends_on"]
    assert api_waits_for["migrate"]["condition"] == "service_completed_successfully"


def test_the_dockerfile_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    lines = [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    users = [line.split(None, 1)[1] for line in instructions if line.upper().startswith("USER ")]
    assert users, "no USER instruction"
    assert users[-1].split(":")[0] not in ("root", "0")
    assert any(re.match(r"HEALTHCHECK\s+(?!NONE)", line, re.I) for line in instructions)
