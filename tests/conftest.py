"""Shared fixtures: settings in a temp dir, a fresh app per test, the face data set."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from flask import Flask
from flask.testing import FlaskClient
from PIL import Image

from faceapi.app import create_app
from faceapi.config import Settings
from tests.fakes import FakeClock, FakeEngine

REPO = Path(__file__).resolve().parent.parent
FIXTURE_FACES = REPO / "tests" / "data" / "faces"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--db", choices=("sqlite", "postgresql"),
                     default=os.environ.get("FACEAPI_TEST_DB", "sqlite"),
                     help="database backend for store tests (default sqlite)")


def shared_faces_dir() -> Path:
    return Path(os.environ.get("FACEAPI_FACES_DIR", REPO.parent / "shared" / "data" / "faces"))


@pytest.fixture
def faces_dir() -> Path:
    """The full shared face data set; tests that need it skip when it is absent."""
    path = shared_faces_dir()
    if not (path / "LABELS.csv").is_file():
        pytest.skip(f"shared face data set not found at {path} (set FACEAPI_FACES_DIR)")
    return path


@pytest.fixture
def fixture_faces() -> Path:
    """The small licensed fixture set carried in the repo (tests/data/faces)."""
    return FIXTURE_FACES


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(env="test", data_dir=tmp_path / "data", log_format="json")


@pytest.fixture
def fake_engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def app(settings: Settings, fake_engine: FakeEngine, clock: FakeClock) -> Flask:
    return create_app(settings, engine=fake_engine, clock=clock)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def encode(pixels: np.ndarray, fmt: str = "PNG", **save: object) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt, **save)
    return buffer.getvalue()


def solid_image(width: int = 64, height: int = 48, fmt: str = "PNG",
                color: tuple[int, int, int] = (120, 90, 60)) -> bytes:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[:, :] = color
    return encode(pixels, fmt)
