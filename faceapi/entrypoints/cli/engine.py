"""`faceapi engine convert`: convert dlib's face recognition ResNet and MMOD CNN face
detector to ONNX into the data directory now (the engine otherwise does it on first
start, the detector only when it uses it; docs/engines.md)."""

from __future__ import annotations

import click

from faceapi.config import ConfigError, Settings


@click.group()
def engine() -> None:
    """The local engine's models."""


@engine.command("convert")
@click.option("--force", is_flag=True, help="Convert again even if a cached file exists.")
def convert_cmd(force: bool) -> None:
    """Write data_dir/models/dlib_face_recognition_resnet_model_v1.<sha256>.c<N>.onnx and
    mmod_human_face_detector.<sha256>.c<N>.onnx."""
    from faceapi.adapters.engines.local.engine import MODELS_CACHE
    from faceapi.adapters.engines.local.models import CNN_FILE, RECOGNITION_FILE, models_dir
    from faceapi.adapters.engines.local.onnx_files import (
        MMOD,
        RESNET,
        ConversionError,
        ensure_model,
        file_sha256,
    )

    lines = []
    try:
        settings = Settings.from_env()
        for name, kind in ((RECOGNITION_FILE, RESNET), (CNN_FILE, MMOD)):
            source = models_dir() / name
            target = ensure_model(source, settings.data_dir / MODELS_CACHE, force=force,
                                  kind=kind)
            lines += [str(target), f"source {source.name} sha256 {file_sha256(source)}"]
    except (ConfigError, ConversionError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo("\n".join(lines))
