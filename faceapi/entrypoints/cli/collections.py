"""`faceapi collections ...`: create and list collections from the command line (for
operators preparing a bulk import). Changes are audited with the `system` actor."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from faceapi.domain.errors import FaceApiError
from faceapi.entrypoints.cli.common import CLI_ACTOR, cli_container

if TYPE_CHECKING:
    pass


@click.group()
def collections() -> None:
    """Face collections: create, list, describe."""


@collections.command("create")
@click.argument("collection_id")
@click.option("--description", default="", help="What the collection is for.")
@click.option("--no-consent-required", "no_consent", is_flag=True,
              help="Index faces without a recorded consent (only where another lawful "
                   "basis covers every subject).")
@click.option("--no-face-crops", "no_crops", is_flag=True,
              help="Keep no crop of indexed faces (reviewers then see the probe only).")
@click.option("--no-keep-chips", "no_chips", is_flag=True,
              help="Keep no aligned face chips: a model change then needs re-enrollment "
                   "from photos instead of `faceapi collections reindex`.")
@click.option("--policies", "policy_names", default=None,
              help="Comma-separated verify/search policies that may be used on the "
                   "collection (default: FACEAPI_DEFAULT_COLLECTION_POLICIES).")
@click.option("--multiple-faces", type=click.Choice(["refuse", "largest"]),
              default="refuse", show_default=True,
              help="Enrolling a photo with several faces: refuse it, or take the largest "
                   "face with a warning.")
def create_cmd(collection_id: str, description: str, *, no_consent: bool,
               no_crops: bool, no_chips: bool, policy_names: str | None,
               multiple_faces: str) -> None:
    """Create a collection bound to the configured engine and model version, and to the
    policies that may be used on it."""
    from faceapi.domain.collections import MultipleFaces
    from faceapi.services.collections import CreateCollectionRequest

    request = CreateCollectionRequest(
        collection_id, description, consent_required=not no_consent, keep_face_crops=not no_crops,
        keep_chips=not no_chips,
        policies=None if policy_names is None else tuple(policy_names.split(",")),
        multiple_faces=MultipleFaces(multiple_faces))
    with cli_container() as container:
        try:
            collection = container.use_cases.create_collection(request, actor=CLI_ACTOR)
        except FaceApiError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc
    click.echo(f"created {collection.collection_id} ({collection.engine} "
               f"{collection.model_version}, consent required: {collection.consent_required}, "
               f"multiple faces: {collection.multiple_faces.value}, "
               f"policies: {','.join(collection.policies)})")


@collections.command("list")
def list_cmd() -> None:
    """List collections with their face and subject counts."""
    with cli_container() as container:
        use_cases = container.use_cases
        token: str | None = None
        while True:
            page = use_cases.list_collections(actor=CLI_ACTOR, next_token=token)
            # The page's counts in one read, not one transaction per collection.
            counts = use_cases.collection_counts(page.collections)
            for c, stats in counts:
                click.echo(f"{c.collection_id}\tfaces={stats.face_count}\t"
                           f"subjects={stats.subject_count}\t{c.engine} {c.model_version}\t"
                           f"policies={','.join(c.policies)}")
            token = page.next_token
            if token is None:
                break


@collections.command("reindex")
@click.argument("collection_id")
@click.option("--to-version", default="current", show_default=True,
              help="The template version to move to: the configured engine's (`current`, "
                   "or its version string spelled out as a check).")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1, 1000),
              help="Faces re-embedded per transaction.")
def reindex_cmd(collection_id: str, to_version: str, batch_size: int) -> None:
    """Re-embed a collection's faces from its kept chips under the configured engine's
    template version; safe to interrupt and run again (docs/collections.md)."""
    from faceapi.entrypoints.cli.common import cli_checked
    from faceapi.services.reindex import ReindexProgress

    def show(step: ReindexProgress) -> None:
        click.echo(f"reindex {collection_id}: {step.done}/{step.to_do} faces re-embedded, "
                   f"{step.without_chip} without a chip", err=True)

    with cli_checked() as container:
        engine = container.engine
        click.echo(f"reindex {collection_id} to {engine.template_version} "
                   f"({engine.name} {engine.model_version})", err=True)
        report = container.use_cases.reindex_collection(
            collection_id, actor=CLI_ACTOR, to_version=to_version, batch_size=batch_size,
            progress=show)
    click.echo(f"reindexed {report.reindexed} faces of {collection_id} to "
               f"{report.template_version} ({report.already_current} were already current, "
               f"{report.without_chip} have no kept chip, {report.remaining} not at the "
               "template version)")
    if report.without_chip_ids:
        click.echo("faces without a kept chip (re-enroll from a photo): "
                   + " ".join(report.without_chip_ids))
