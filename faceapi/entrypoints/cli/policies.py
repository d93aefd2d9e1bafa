"""`faceapi policies ...`: check the policy files, show the policies in force."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from faceapi.adapters.policy_files import read_policy_file
from faceapi.bootstrap import bootstrap
from faceapi.config import Settings
from faceapi.domain.policies import PolicyError, UnknownPolicy


@click.group()
def policies() -> None:
    """Policies: validate files, list the policies in force with their versions."""


@policies.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def check(paths: tuple[Path, ...]) -> None:
    """Validate policy files (default: every *.yaml in FACEAPI_POLICIES_DIR); exit 1 on error."""
    files: list[Path] = []
    for path in paths or (Settings.from_env().policies_dir,):
        files += sorted(path.glob("*.yaml")) if path.is_dir() else [path]
    if not files:
        click.echo("no policy files found", err=True)
        sys.exit(1)
    failed = False
    for file in files:
        try:
            policy = read_policy_file(file)
        except PolicyError as exc:
            failed = True
            click.echo(f"FAIL {exc.message}", err=True)
            continue
        click.echo(f"ok   {file}  {policy.name}  {policy.operation.value}  {policy.version}")
    sys.exit(1 if failed else 0)


@policies.command("show")
@click.argument("name", required=False)
def show(name: str | None) -> None:
    """Print the policies in force (or one) as canonical JSON with their versions."""
    try:
        loaded = bootstrap().policies
        chosen = [loaded.require(name)] if name else list(loaded.values())
    except (PolicyError, UnknownPolicy) as exc:
        click.echo(exc.message, err=True)
        sys.exit(1)
    for policy in chosen:
        click.echo(json.dumps({"version": policy.version, **policy.canonical()}, sort_keys=True))
