"""`faceapi engine convert`: convert dlib's face recognition ResNet to ONNX into the
data directory now (the engine otherwise does it on first start; docs/engines.md)."""

from __future__ import annotations

import click

from faceapi.config import ConfigError, Settings


@click.group()
def engine() -> None:
    """The local engine's models."""


@engine.command("convert")
@click.option("--force", is_flag=True, help="Convert again even if a cached file exists.")
def convert_cmd(force: bool) -> None:
    """Write data_dir/models/dlib_face_recognition_resnet_model_v1.<sha256>.c<N>.onnx."""
    from faceapi.adapters.engines.local.engine import MODELS_CACHE
    from faceapi.adapters.engines.local.models import RECOGNITION_FILE, models_dir
    from faceapi.adapters.engines.local.onnx_files import (
        ConversionError,
        ensure_model,
        file_sha256,
    )

    try:
        settings = Settings.from_env()
        source = models_dir() / RECOGNITION_FILE
        target = ensure_model(source, settings.data_dir / MODELS_CACHE, force=force)
    except (ConfigError, ConversionError, OSError, RuntimeError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{target}\nsource {source.name} sha256 {file_sha256(source)}")
