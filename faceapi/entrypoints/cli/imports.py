"""`faceapi import FOLDER --collection C`: bulk enrollment for operators.

Every image under FOLDER is indexed through the same IndexFaces service as the API
(intake, quality filter, consent rule, one audited transaction per image). The subject
of each image comes from its folder name (default), its file name (`alice_02.jpg` ->
`alice`), or a CSV of `file,subject_id`. A run is resumable: an image whose SHA-256 is
already indexed in the collection is skipped, so running the same command again after
an interruption carries on where it stopped. Every file gets a row in the CSV report:
the face ids indexed, or the reason it was not.
"""

from __future__ import annotations

import csv
import hashlib
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import click
import structlog

from faceapi.bootstrap import UseCases
from faceapi.domain.audit import Actor
from faceapi.domain.collections import ConsentBasis, QualityFilter, valid_id
from faceapi.domain.errors import FaceApiError
from faceapi.domain.faces import Attributes
from faceapi.entrypoints.cli.common import cli_container
from faceapi.services.collections import ConsentInput
from faceapi.services.enroll import IndexFacesRequest
from faceapi.services.keys import parse_expiry

log = structlog.get_logger(__name__)

EXTENSIONS = {".jpg": "jpeg", ".jpeg": "jpeg", ".png": "png", ".webp": "webp",
              ".bmp": "bmp", ".gif": "gif"}
REPORT_FIELDS = ("file", "subject_id", "status", "face_ids", "reason")
_NUMBERED_RE = re.compile(r"^(.+?)[_\-. ]*\d+$")


@dataclass(frozen=True)
class ImportItem:
    path: Path
    relative: str
    subject_id: str | None
    problem: str | None = None  # why it cannot be imported, decided before reading it


@dataclass(frozen=True)
class Outcome:
    status: str  # indexed | skipped | not_indexed | failed
    face_ids: tuple[str, ...] = ()
    reason: str = ""


def subject_from_filename(stem: str) -> str:
    """`alice_02` -> `alice`, `bob-1` -> `bob`, `carol` -> `carol`."""
    match = _NUMBERED_RE.match(stem)
    return match.group(1) if match else stem


def _clean(subject: str | None) -> tuple[str | None, str | None]:
    if not subject:
        return None, "no_subject"
    subject = subject.strip()
    return (subject, None) if valid_id(subject) else (subject, "invalid_subject_id")


def plan(folder: Path, *, subject_from: str, csv_file: Path | None = None,
         file_column: str = "file", subject_column: str = "subject_id") -> list[ImportItem]:
    """The files to import, in a stable order, each with its subject (or a problem)."""
    if csv_file is not None:
        return _plan_from_csv(folder, csv_file, file_column, subject_column)
    items = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if path.suffix.lower() not in EXTENSIONS:
            continue
        relative = path.relative_to(folder).as_posix()
        if subject_from == "filename":
            raw: str | None = subject_from_filename(path.stem)
        else:
            raw = path.parent.name if path.parent != folder else None
        subject, problem = _clean(raw)
        items.append(ImportItem(path, relative, subject, problem))
    return items


def _plan_from_csv(folder: Path, csv_file: Path, file_column: str,
                   subject_column: str) -> list[ImportItem]:
    try:
        with csv_file.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            columns = reader.fieldnames or []
            for needed in (file_column, subject_column):
                if needed not in columns:
                    raise click.UsageError(f"{csv_file} has no column {needed!r} "
                                           f"(columns: {', '.join(columns)})")
            rows = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise click.UsageError(f"{csv_file} is not a UTF-8 CSV file ({exc})") from exc
    root = folder.resolve()
    items = []
    for row in rows:
        relative = (row.get(file_column) or "").strip()
        subject, problem = _clean(row.get(subject_column))
        if "\x00" in relative:  # no file has such a name (and Path refuses it)
            items.append(ImportItem(folder, relative, subject, "file_not_found"))
            continue
        path = (folder / relative).resolve()
        if not path.is_relative_to(root):
            problem = "outside_folder"  # a CSV must not reach files beyond FOLDER
        elif not path.is_file():
            problem = problem or "file_not_found"
        items.append(ImportItem(path, relative, subject, problem))
    return items


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Importer:
    """Imports one item at a time through the same use cases the API calls."""

    collection_id: str
    actor: Actor
    use_cases: UseCases
    max_image_bytes: int
    quality_filter: QualityFilter = QualityFilter.AUTO
    max_faces: int | None = None
    consent: ConsentInput | None = None

    def __post_init__(self) -> None:
        self._consented: set[str] = set()

    def already_indexed(self, sha256: str) -> tuple[str, ...]:
        return self.use_cases.faces_of_image(self.collection_id, sha256)

    def _consent_for(self, subject_id: str) -> ConsentInput | None:
        # Record the batch's consent once per subject, not once per image, and only for
        # subjects with none: a lapsed consent is not renewed by a batch (the image then
        # fails with consent_required, see services/bulk_import.py).
        if self.consent is None or subject_id in self._consented:
            return None
        if self.use_cases.consent_status(self.collection_id, subject_id) != "none":
            return None
        return self.consent

    def run(self, item: ImportItem) -> Outcome:
        if item.problem is not None or item.subject_id is None:
            return Outcome("failed", reason=item.problem or "no_subject")
        try:
            if item.path.stat().st_size > self.max_image_bytes:
                return Outcome("failed", reason="image_too_large")
            sha = sha256_file(item.path)
            done = self.already_indexed(sha)
            if done:
                return Outcome("skipped", done, "already_indexed")
            data = item.path.read_bytes()
        except OSError:
            return Outcome("failed", reason="unreadable")
        try:
            consent = self._consent_for(item.subject_id)
            result = self.use_cases.index_faces(
                IndexFacesRequest(collection_id=self.collection_id, image=data,
                                  subject_id=item.subject_id, max_faces=self.max_faces,
                                  quality_filter=self.quality_filter, consent=consent,
                                  attributes=Attributes.DEFAULT,
                                  collection_rule=self.max_faces is None),
                actor=self.actor)
        except FaceApiError as exc:
            if exc.code == "multiple_faces":  # the collection refuses group photos
                return Outcome("failed", reason=f"multiple_faces: "
                                                f"{exc.details.get('face_count')} faces")
            return Outcome("failed", reason=exc.code)
        if result.face_records:  # the consent (if any) was recorded with the faces
            self._consented.add(item.subject_id)
        ids = tuple(r.face.face_id for r in result.face_records)
        if ids:
            # A group photo enrolled by its largest face says so in the report.
            return Outcome("indexed", ids, "; ".join(result.warnings))
        reasons = sorted({r.value for u in result.unindexed_faces for r in u.reasons})
        return Outcome("not_indexed", reason="+".join(reasons) or "no_face")


def write_report_row(writer: csv.DictWriter[str], item: ImportItem, outcome: Outcome) -> None:
    writer.writerow({"file": item.relative, "subject_id": item.subject_id or "",
                     "status": outcome.status, "face_ids": ";".join(outcome.face_ids),
                     "reason": outcome.reason})


def import_items(items: list[ImportItem], importer: Importer, report: TextIO,
                 progress: Iterator[ImportItem] | None = None) -> dict[str, int]:
    """Import every item, writing a report row as each one finishes."""
    writer = csv.DictWriter(report, fieldnames=REPORT_FIELDS)
    writer.writeheader()
    counts: dict[str, int] = {}
    for item in progress if progress is not None else iter(items):
        outcome = importer.run(item)
        write_report_row(writer, item, outcome)
        report.flush()  # an interrupted run still leaves a report of what it did
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    return counts


def _shown(item: ImportItem | None) -> str | None:
    return item.relative if item is not None else None


@click.command("import")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--collection", "collection_id", required=True, help="Collection to index into.")
@click.option("--subject-from", type=click.Choice(["folder", "filename", "csv"]),
              default="folder", show_default=True,
              help="Where each image's subject id comes from.")
@click.option("--csv", "csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV of file (relative to FOLDER) and subject id; implies --subject-from csv.")
@click.option("--file-column", default="file", show_default=True)
@click.option("--subject-column", default="subject_id", show_default=True)
@click.option("--quality-filter", type=click.Choice([q.value for q in QualityFilter]),
              default="AUTO", show_default=True)
@click.option("--max-faces", type=click.IntRange(1, 100), default=None,
              help="Index up to this many faces per image, the largest first, all under "
                   "the image's subject (Rekognition's MaxFaces). Default: the "
                   "collection's multiple_faces rule (refuse, or the largest face).")
@click.option("--consent-basis", type=click.Choice([b.value for b in ConsentBasis]),
              help="Lawful basis recorded for every subject that has none yet.")
@click.option("--consent-reference", help="Where the consent evidence is kept (e.g. a batch id).")
@click.option("--consent-expires", default=None,
              help="When the batch's consent lapses: an ISO date or time (UTC when no zone) "
                   "(2027-01-31T00:00:00Z) or a number of days (90d).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="CSV report path (default: import-report-<collection>.csv).")
def import_cmd(  # noqa: PLR0917 (click passes every option as an argument)
        folder: Path, collection_id: str, subject_from: str, csv_file: Path | None,
        file_column: str, subject_column: str, quality_filter: str, max_faces: int | None,
        consent_basis: str | None, consent_reference: str | None,
        consent_expires: str | None, report_path: Path | None) -> None:
    """Index every image under FOLDER into a collection; resumable, with a CSV report."""
    if subject_from == "csv" and csv_file is None:
        raise click.UsageError("--subject-from csv needs --csv FILE")
    if (consent_basis is None) != (consent_reference is None):
        raise click.UsageError("give --consent-basis and --consent-reference together")
    if consent_expires is not None and consent_basis is None:
        raise click.UsageError("--consent-expires needs --consent-basis and --consent-reference")
    # Checked before anything is opened or read: a batch consent already over allows
    # nothing (the CLI runs on the wall clock).
    consent_expires_at = _expiry(consent_expires, datetime.now(UTC))
    with cli_container() as container:
        use_cases = container.use_cases
        try:
            use_cases.describe_collection(collection_id, actor=Actor.system("import"))
        except FaceApiError as exc:
            raise click.ClickException(f"collection {collection_id!r} not found") from exc
        items = plan(folder, subject_from="csv" if csv_file else subject_from,
                     csv_file=csv_file, file_column=file_column,
                     subject_column=subject_column)
        actor = Actor.system("import")
        importer = Importer(
            collection_id=collection_id, actor=actor, use_cases=use_cases,
            max_image_bytes=container.settings.max_image_bytes,
            quality_filter=QualityFilter(quality_filter), max_faces=max_faces,
            consent=ConsentInput(ConsentBasis(consent_basis), consent_reference,
                                 consent_expires_at)
            if consent_basis and consent_reference else None)
        report_path = report_path or Path(f"import-report-{collection_id}.csv")
        bar = click.progressbar(items, label=f"importing {len(items)} files",
                                item_show_func=_shown, file=sys.stderr)
        try:
            report = report_path.open("w", newline="", encoding="utf-8")
        except OSError as exc:
            raise click.ClickException(
                f"cannot write the report {report_path}: {exc.strerror}") from exc
        with report, bar:
            counts = import_items(items, importer, report, progress=iter(bar))
        use_cases.record_import_run(collection_id, counts, actor=actor)
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no files"
    click.echo(f"{summary}; report: {report_path}")


def _expiry(text: str | None, now: datetime) -> datetime | None:
    """--consent-expires as a moment: the same forms as `faceapi keys create --expires`;
    one already past is refused before any image is read."""
    if text is None:
        return None
    try:
        moment = parse_expiry(text, now)
    except FaceApiError as exc:
        raise click.BadParameter(exc.message, param_hint="--consent-expires") from exc
    if moment <= now:
        raise click.BadParameter("must be in the future", param_hint="--consent-expires")
    return moment
