"""`faceapi keys ...`: create, list and revoke API keys, and bootstrap the first admin key.

The CLI talks to the database directly (it runs where the server runs, with the same
FACEAPI_* settings), so it works before any key exists; its audit actor is
`system/cli` (`system/bootstrap` for the first key).
"""

from __future__ import annotations

import os

import click

from faceapi.domain import access
from faceapi.entrypoints.cli.common import CLI_ACTOR, cli_checked
from faceapi.services import keys as key_service


@click.group()
def keys() -> None:
    """API keys: create (shown once), list, revoke, bootstrap the first admin key."""


@keys.command("create")
@click.option("--role", required=True, type=click.Choice(access.ROLES))
@click.option("--name", required=True, help="What the key is for (shown in lists).")
@click.option("--owner", required=True,
              help="The person or system the key belongs to, e.g. alice@example.org or "
                   "system:billing-app. The two-person rule counts owners, not keys: "
                   "give each reviewer key its person.")
@click.option("--collections", multiple=True,
              help="Collections the key may use (repeat or comma-separate); default all.")
@click.option("--policies", multiple=True,
              help="Policies the key may use (repeat or comma-separate); default all.")
@click.option("--expires", default=None,
              help="Expiry: 90d, 12h, 30m or an ISO 8601 date/time; default never.")
def create_cmd(  # noqa: PLR0917 (click passes every option as an argument)
        role: str, name: str, owner: str, collections: tuple[str, ...],
        policies: tuple[str, ...], expires: str | None) -> None:
    """Create a key and print it once; only its hash is stored."""
    with cli_checked() as container:
        now = container.clock.now()
        expires_at = key_service.parse_expiry(expires, now) if expires else None
        new = key_service.NewKey(name=name, role=role, owner=owner,
                                 collections=key_service.split_scope(collections),
                                 policies=key_service.split_scope(policies),
                                 expires_at=expires_at)
        created = container.use_cases.create_key(new, actor=CLI_ACTOR)
    click.echo(created.secret)
    _echo_sigv4(created)
    click.echo(f"created key {created.key.id} ({role}, {created.key.name!r}, owner "
               f"{created.key.owner!r}); it is shown "
               "only now: store it in your secret manager", err=True)


@keys.command("list")
@click.option("--active", is_flag=True, help="Only keys that are not revoked.")
def list_cmd(active: bool) -> None:
    """List keys: id, role, status, owner, name, scope, times (never the keys)."""
    with cli_checked() as container:
        found = container.use_cases.list_keys(actor=CLI_ACTOR, include_revoked=not active)
        now = container.clock.now()
    click.echo("id        role      status   last_used             owner / name  [scope]")
    for key in found:
        scope = []
        if key.collections is not None:
            scope.append("collections=" + ",".join(sorted(key.collections)))
        if key.policies is not None:
            scope.append("policies=" + ",".join(sorted(key.policies)))
        last = key.last_used_at.strftime("%Y-%m-%dT%H:%M:%SZ") if key.last_used_at else "never"
        click.echo(f"{key.id:<9} {key.role:<9} {key.status(now):<8} {last:<21} "
                   f"{key.owner} / {key.name}"
                   + (f"  [{' '.join(scope)}]" if scope else ""))


@keys.command("revoke")
@click.argument("key_id")
@click.option("--force", is_flag=True,
              help="Allow revoking the last active unscoped admin key.")
def revoke_cmd(key_id: str, force: bool) -> None:
    """Revoke a key by id; it stops working at once."""
    with cli_checked() as container:
        key = container.use_cases.revoke_key(key_id, actor=CLI_ACTOR, allow_last_admin=force)
    click.echo(f"revoked key {key.id} ({key.role}, {key.name!r})")


def _echo_sigv4(created: key_service.CreatedKey) -> None:
    # On stderr with the other notes, so `KEY=$(faceapi keys create ...)` still captures
    # the key alone; shown once, like the key.
    click.echo(f"for the Rekognition-compatible endpoint (AWS SDKs): "
               f"aws_access_key_id={created.key.id} "
               f"aws_secret_access_key={created.sigv4_secret}", err=True)


@keys.command("rotate")
@click.argument("key_id")
@click.option("--expires", default=None,
              help="Expiry of the new key (90d, 12h, 30m, ISO 8601); default the old one's.")
def rotate_cmd(key_id: str, expires: str | None) -> None:
    """Create a successor with the same name, owner, role and scope and print it once; the old
    key works until you revoke it (`faceapi keys revoke KEY_ID`)."""
    with cli_checked() as container:
        now = container.clock.now()
        expires_at = key_service.parse_expiry(expires, now) if expires else None
        created = container.use_cases.rotate_key(key_id, actor=CLI_ACTOR, expires_at=expires_at)
    click.echo(created.secret)
    _echo_sigv4(created)
    click.echo(f"created key {created.key.id} to replace {key_id}; deploy it, then run "
               f"`faceapi keys revoke {key_id}`", err=True)


@keys.command("bootstrap")
def bootstrap_cmd() -> None:
    """First start: with no key at all, create an admin key into <data dir>/admin-key.txt
    (mode 0600). Does nothing once any key exists; there is never a default key."""
    with cli_checked() as container:
        result = container.use_cases.bootstrap_keys()
    if not result.created:
        click.echo("API keys exist: nothing to bootstrap (manage them with `faceapi keys`)")
        return
    path = result.path.resolve()
    # The address gunicorn will bind (deploy/gunicorn.conf.py reads the same variable).
    bind = os.environ.get("FACEAPI_BIND", "127.0.0.1:8000")
    click.echo(f"created the first admin key {result.key_id} in {path} (readable by you only).")
    click.echo(f"  use it:   curl -H \"Authorization: Bearer $(cat {path})\" "
               f"http://{bind}/v1/keys")
    click.echo("  then create the keys you need (POST /v1/keys or `faceapi keys create`),")
    click.echo(f"  and delete the file once the key is in your secret manager: rm {path}")
