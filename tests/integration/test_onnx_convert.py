"""Converting dlib's ResNet file to ONNX: the real file parses to its last byte, a
damaged or different file is refused, and the converted model is cached once per source
SHA-256 in the data directory, atomically, even with several processes starting at once."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from faceapi.adapters.engines.local.dlib_format import DlibFormatError, read_network
from faceapi.adapters.engines.local.engine import MODELS_CACHE, LocalEngine
from faceapi.adapters.engines.local.models import RECOGNITION_FILE, models_dir
from faceapi.adapters.engines.local.onnx_convert import convert
from faceapi.adapters.engines.local.onnx_files import (
    CONVERTER_VERSION,
    cached_name,
    ensure_model,
    file_sha256,
)
from faceapi.adapters.engines.local.onnx_runtime import OnnxDescriptor
from faceapi.config import Settings
from faceapi.entrypoints.cli import cli

SOURCE = models_dir() / RECOGNITION_FILE


@pytest.fixture(scope="module")
def source_bytes() -> bytes:
    return SOURCE.read_bytes()


def test_the_shipped_model_file_parses_to_its_last_byte(source_bytes: bytes) -> None:
    layers = read_network(source_bytes)
    names = [layer.name for layer in layers if layer.name]
    assert names.count("con_4") == 29
    assert names.count("affine_") == 29
    assert layers[-1].mean == pytest.approx((122.782, 117.001, 104.298), abs=1e-4)
    stem = next(layer for layer in layers if layer.name == "con_4" and layer.spec.size == 7)
    assert stem.weights is not None
    assert stem.weights.shape == (32, 3, 7, 7)


@pytest.mark.parametrize("cut", [10, 400, 1_000_000, -1])
def test_a_truncated_model_file_is_refused(source_bytes: bytes, cut: int) -> None:
    with pytest.raises(DlibFormatError):
        read_network(source_bytes[:cut])


def test_extra_bytes_after_the_network_are_refused(source_bytes: bytes) -> None:
    with pytest.raises(DlibFormatError, match="unread bytes"):
        read_network(source_bytes + b"\x00")


def test_a_layer_that_differs_from_the_template_is_refused(source_bytes: bytes) -> None:
    renamed = source_bytes.replace(b"\x01\x05con_4", b"\x01\x05con_9", 1)
    with pytest.raises(DlibFormatError, match="con_9"):
        read_network(renamed)
    # The stem convolution (7x7, stride 2) written with stride 1: another network.
    at = source_bytes.index(b"\x01\x05con_4")
    params_end = _tensor_end(source_bytes, at + 7)
    # num_filters, nr, nc, stride_y: 32, 7, 7, 2 as dlib integers.
    assert source_bytes[params_end:params_end + 8] == b"\x01\x20\x01\x07\x01\x07\x01\x02"
    restrided = (source_bytes[:params_end + 7] + b"\x01"
                 + source_bytes[params_end + 8:])
    with pytest.raises(DlibFormatError, match="does not match the template"):
        read_network(restrided)


def _tensor_end(data: bytes, at: int) -> int:
    """Offset just past a dlib tensor starting at `at` (version 2, 4 sizes, floats)."""
    pos, sizes = at, []
    for _ in range(5):
        size = data[pos] & 0x0F
        sizes.append(int.from_bytes(data[pos + 1:pos + 1 + size], "little"))
        pos += 1 + size
    return pos + 4 * sizes[1] * sizes[2] * sizes[3] * sizes[4]


def test_conversion_is_cached_under_the_source_sha256(tmp_path: Path) -> None:
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    first = ensure_model(SOURCE, tmp_path)
    assert first.name == cached_name(digest)
    assert digest in first.name
    assert f".c{CONVERTER_VERSION}." in first.name
    props = {p.key: p.value for p in onnx.load(str(first)).metadata_props}
    assert props["source_sha256"] == digest
    stamp = first.stat().st_mtime_ns
    assert ensure_model(SOURCE, tmp_path) == first
    assert first.stat().st_mtime_ns == stamp  # found, not written again
    sidecar = tmp_path / (first.name + ".sha256")
    assert sidecar.read_text().strip() == file_sha256(first)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [first.name, sidecar.name, ".convert.lock"])


@pytest.mark.parametrize("damage", ["truncate", "flip", "no sidecar"])
def test_a_damaged_cached_file_is_converted_again(tmp_path: Path, damage: str) -> None:
    target = ensure_model(SOURCE, tmp_path)
    good = target.read_bytes()
    if damage == "truncate":
        target.write_bytes(good[:1000])
    elif damage == "flip":  # one weight changed, same size: only the hash tells
        target.write_bytes(good[:5000] + bytes([good[5000] ^ 1]) + good[5001:])
    else:  # a crash between writing the model and its sidecar
        (tmp_path / (target.name + ".sha256")).unlink()
    again = ensure_model(SOURCE, tmp_path)
    assert again == target
    assert target.read_bytes() == good


def test_other_weights_get_their_own_file_and_their_own_answers(tmp_path: Path) -> None:
    data = bytearray(SOURCE.read_bytes())
    # Change one weight of the stem convolution (a float inside its params tensor): the
    # structure is the same, the source hash and the descriptors are not.
    at = bytes(data).index(b"\x01\x05con_4") + 7 + 10 + 100
    data[at] ^= 0x40
    other = tmp_path / "src" / RECOGNITION_FILE
    other.parent.mkdir()
    other.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    original, changed = ensure_model(SOURCE, cache), ensure_model(other, cache)
    assert original != changed
    chips = np.random.default_rng(7).integers(0, 256, (1, 150, 150, 3), dtype=np.uint8)
    a = OnnxDescriptor(original, threads=1).compute(chips)
    b = OnnxDescriptor(changed, threads=1).compute(chips)
    assert float(np.abs(a - b).max()) > 1e-4


def _convert_into(cache: str) -> str:
    return str(ensure_model(SOURCE, Path(cache)))


def test_workers_starting_together_convert_once_and_leave_no_partial_file(
        tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        paths = pool.map(_convert_into, [str(tmp_path)] * 3)
    assert len(set(paths)) == 1
    files = sorted(p.name for p in tmp_path.iterdir())
    name = Path(paths[0]).name  # and no .tmp left over:
    assert files == sorted([name, name + ".sha256", ".convert.lock"])
    onnx.checker.check_model(onnx.load(paths[0]))


def test_the_engine_converts_into_the_data_directory_on_first_start(tmp_path: Path) -> None:
    engine = LocalEngine(Settings(env="test", data_dir=tmp_path))
    assert engine.descriptor_runtime == "onnx"
    assert [p.suffix for p in (tmp_path / MODELS_CACHE).glob("*.onnx")] == [".onnx"]


def test_an_unwritable_data_directory_converts_in_memory(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data directory should be")
    engine = LocalEngine(Settings(env="test", data_dir=blocked))
    assert engine.descriptor_runtime == "onnx"
    assert engine.ready() == (True, "models loaded")


def test_the_dlib_runtime_and_jittered_descriptors_need_no_conversion(tmp_path: Path) -> None:
    assert LocalEngine(Settings(env="test", data_dir=tmp_path,
                                descriptor_runtime="dlib")).descriptor_runtime == "dlib"
    # dlib's jitter averages its own random crops: only dlib computes those.
    assert LocalEngine(Settings(env="test", data_dir=tmp_path),
                       jitters=3).descriptor_runtime == "dlib"
    assert not (tmp_path / MODELS_CACHE).exists()


def test_faceapi_engine_convert_writes_the_cached_models(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["engine", "convert"], env={"FACEAPI_DATA_DIR": str(tmp_path)})
    assert result.exit_code == 0, result.output
    path = Path(result.output.splitlines()[0])
    assert path.parent == tmp_path / MODELS_CACHE
    assert path.is_file()
    detector = Path(result.output.splitlines()[2])  # the MMOD CNN detector, converted too
    assert detector.name.startswith("mmod_human_face_detector.")
    assert detector.is_file()
    stamp = path.stat().st_mtime_ns
    forced = runner.invoke(cli, ["engine", "convert", "--force"],
                           env={"FACEAPI_DATA_DIR": str(tmp_path)})
    assert forced.exit_code == 0, forced.output
    assert path.stat().st_mtime_ns != stamp


def test_faceapi_engine_convert_reports_a_bad_setting_without_a_traceback() -> None:
    result = CliRunner().invoke(cli, ["engine", "convert"],
                                env={"FACEAPI_DESCRIPTOR_RUNTIME": "tensorflow"})
    assert result.exit_code == 1
    assert "FACEAPI_DESCRIPTOR_RUNTIME" in result.output


def test_the_converted_graph_depends_only_on_the_file_content(tmp_path: Path) -> None:
    # The converter reads bytes (no dlib): a copy elsewhere converts to the same graph.
    copy = tmp_path / RECOGNITION_FILE
    shutil.copyfile(SOURCE, copy)
    model_a, digest_a = convert(SOURCE)
    model_b, digest_b = convert(copy)
    assert digest_a == digest_b
    assert model_a.SerializeToString() == model_b.SerializeToString()
    assert os.path.getsize(copy) == os.path.getsize(SOURCE)


@pytest.mark.parametrize("cached", [True, False], ids=["cached", "first start"])
def test_the_server_process_never_loads_the_onnx_package(tmp_path: Path, cached: bool) -> None:
    # The onnx package and a conversion's garbage cost memory, and gunicorn workers
    # fork from the process that converted: a start that finds the cached model needs
    # onnxruntime only, and a first start converts in a child process.
    if cached:
        ensure_model(SOURCE, tmp_path / MODELS_CACHE)
    code = ("import sys; from pathlib import Path; "
            "from faceapi.adapters.engines.local import LocalEngine; "
            "from faceapi.config import Settings; "
            f"e = LocalEngine(Settings(env='test', data_dir=Path({str(tmp_path)!r}))); "
            "e.ready(); print(e.descriptor_runtime, 'onnx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.split() == ["onnx", "False"]
