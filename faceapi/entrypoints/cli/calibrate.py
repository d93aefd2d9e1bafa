"""`faceapi calibrate SOURCE --out DIR`: tune a similarity threshold on your own data.

SOURCE is a folder with one subfolder per identity (its images), or a CSV with a header:
`path,identity[,group]` (labelled images: every pair is scored) or
`path_a,path_b,same[,group]` (labelled pairs; `same` is 1/0, true/false, yes/no). CSV
paths are relative to the CSV's folder (or `--root`) and must stay inside it. The
configured engine embeds every image once (the API's image intake, formats and limits
apply: an image refused there counts as one without a face). The report directory
gets `report.md`,
`table.csv` (FMR/FNMR per threshold), `summary.json`, `roc.png`, `det.png` and
`distributions.png`; the method is in faceapi/services/calibrate.py.

`--write-policy NAME` writes the chosen threshold into policies/NAME.yaml (validated,
atomic) and audits it as `policy.calibrate` (needs the migrated database)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path

import click

from faceapi.adapters import plots
from faceapi.adapters.policy_threshold import PolicyFileThresholds
from faceapi.domain.errors import FaceApiError, InvalidParameter
from faceapi.domain.images import DecodedImage
from faceapi.domain.policies import PolicyError
from faceapi.entrypoints.cli.common import CLI_ACTOR, cli_checked, cli_container
from faceapi.services import calibrate as svc
from faceapi.services.ports import ImageDecoder

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MAX_CSV_ROWS = 1_000_000
TRUE = {"1", "true", "yes", "same"}
FALSE = {"0", "false", "no", "different"}


def _folder_set(root: Path) -> tuple[svc.LabelledSet, Path]:
    images = []
    for identity_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for file in sorted(identity_dir.rglob("*")):
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES:
                images.append(svc.LabelledImage(str(file.relative_to(root)), identity_dir.name))
    if not images:
        raise click.ClickException(f"{root}: no images in identity subfolders")
    return svc.LabelledSet(images=tuple(images)), root


def _csv_set(path: Path) -> tuple[svc.LabelledSet, Path]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        rows = []
        for i, row in enumerate(reader):
            if i >= MAX_CSV_ROWS:
                raise click.ClickException(f"{path}: more than {MAX_CSV_ROWS} rows")
            rows.append(row)

    def group(row: dict[str, str]) -> str | None:
        return (row.get("group") or "").strip() or None

    if {"path", "identity"} <= columns:
        images = tuple(svc.LabelledImage(r["path"].strip(), r["identity"].strip(), group(r))
                       for r in rows if (r.get("identity") or "").strip())
        return svc.LabelledSet(images=images), path.parent
    if {"path_a", "path_b", "same"} <= columns:
        pairs = []
        for line, r in enumerate(rows, 2):
            same = (r.get("same") or "").strip().lower()
            if same not in TRUE | FALSE:
                raise click.ClickException(f"{path}:{line}: same must be 1/0, true/false, yes/no")
            pairs.append(svc.LabelledPair(r["path_a"].strip(), r["path_b"].strip(),
                                          same in TRUE, group(r)))
        return svc.LabelledSet(pairs=tuple(pairs)), path.parent
    raise click.ClickException(
        f"{path}: header must have path,identity[,group] or path_a,path_b,same[,group]")


def _loader(base: Path, decoder: ImageDecoder) -> Callable[[str], DecodedImage]:
    root = base.resolve()

    def load(relative: str) -> DecodedImage:
        # A CSV names files under its own folder only (no ../, no absolute paths out).
        file = (root / relative).resolve()
        if not file.is_relative_to(root) or not file.is_file():
            raise InvalidParameter(f"{relative[:200]!r}: not a file under {root}")
        return decoder.decode(file.read_bytes())

    return load


@click.command("calibrate")
@click.argument("source", type=click.Path(exists=True, path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="report directory (created)")
@click.option("--target-fmr", type=float, default=1e-3, show_default=True,
              help="false-match rate the chosen threshold must meet")
@click.option("--bootstrap", "rounds", type=click.IntRange(50, 10_000), default=500,
              show_default=True, help="bootstrap rounds for the threshold's interval")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="folder the CSV's paths are relative to (default: the "
                                 "CSV's own folder)")
@click.option("--write-policy", "policy", default=None,
              help="write the chosen threshold into policies/NAME.yaml (audited)")
def calibrate(source: Path, *, out: Path, target_fmr: float, rounds: int, seed: int,
              root: Path | None, policy: str | None) -> None:
    """Measure FMR/FNMR on a labelled set, choose a threshold, write a report."""
    if not 0.0 < target_fmr < 1.0:
        raise click.BadParameter("must be between 0 and 1", param_hint="--target-fmr")
    try:
        data, base = _folder_set(source) if source.is_dir() else _csv_set(source)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise click.ClickException(f"{source}: cannot be read ({type(exc).__name__})") from exc
    except FaceApiError as exc:
        raise click.ClickException(exc.message) from exc
    if root is not None and not source.is_dir():
        base = root

    def progress(done: int, total: int) -> None:
        click.echo(f"\r{done}/{total} images embedded", nl=done == total, err=True)

    with cli_container() as container:
        try:
            report = svc.calibrate(data, engine=container.engine,
                                   load=_loader(base, container.decoder),
                                   target_fmr=target_fmr, rounds=rounds, seed=seed,
                                   progress=progress)
        except FaceApiError as exc:
            raise click.ClickException(exc.message) from exc
    _write_report(report, out)
    c = report.choice
    click.echo(f"threshold for FMR <= {c.target_fmr:g}: {c.threshold:.1f} (measured FMR "
               f"{c.fmr:.6f}, FNMR {c.fnmr:.4f}; 95% interval {c.low:.1f}-{c.high:.1f}); "
               f"report in {out}")
    if policy is None:
        return
    with cli_checked() as container:
        writer = PolicyFileThresholds(container.settings.policies_dir)
        try:
            change = svc.write_policy_threshold(policy, report, writer=writer,
                                                uow=container.store.uow(),
                                                clock=container.clock, actor=CLI_ACTOR)
        except PolicyError as exc:
            click.echo(f"Error: policy not written: {exc.message}", err=True)
            sys.exit(1)
    click.echo(f"policies/{policy}.yaml: min_similarity {change.old_threshold:g} -> "
               f"{change.new_threshold:g}, version {change.old_version[:12]} -> "
               f"{change.new_version[:12]} (audited: policy.calibrate)")


def _write_report(report: svc.CalibrationReport, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    title = f"{report.engine}: {len(report.genuine)} genuine, {len(report.impostor)} impostor"
    pngs = {
        "roc.png": plots.roc_png(report.genuine, report.impostor, f"ROC ({title})"),
        "det.png": plots.det_png(report.genuine, report.impostor, f"DET ({title})"),
        "distributions.png": plots.distributions_png(
            report.genuine, report.impostor, f"Scores ({title})", report.choice.threshold),
    }
    for name, data in pngs.items():
        (out / name).write_bytes(data)
    (out / "table.csv").write_text(svc.table_csv(report), encoding="utf-8")
    (out / "report.md").write_text(svc.report_markdown(report, list(pngs)), encoding="utf-8")
    (out / "summary.json").write_text(json.dumps(report.summary(), indent=2) + "\n",
                                      encoding="utf-8")
