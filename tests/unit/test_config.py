"""Settings are read once from FACEAPI_* variables and a bad value stops the start."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceapi.config import ConfigError, Settings


def test_no_variables_give_the_embedded_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.engine == "local"
    assert settings.max_image_bytes == 5 * 1024 * 1024
    assert settings.image_formats == ("jpeg", "png")
    assert settings.resolved_database_url.startswith("sqlite:///")


def test_variables_are_parsed_by_the_type_of_their_default() -> None:
    settings = Settings.from_env({
        "FACEAPI_ORIENTATION_SEARCH": "off", "FACEAPI_MAX_IMAGE_BYTES": "2048",
        "FACEAPI_AWS_READ_TIMEOUT": "2.5", "FACEAPI_DATA_DIR": "/tmp/x",
        "FACEAPI_IMAGE_FORMATS": "JPEG, png,webp"})
    assert settings.orientation_search is False
    assert settings.max_image_bytes == 2048
    assert settings.aws_read_timeout == 2.5
    assert settings.data_dir == Path("/tmp/x")
    assert settings.image_formats == ("jpeg", "png", "webp")


@pytest.mark.parametrize(("name", "value"), [
    ("FACEAPI_ENGNE", "local"),  # a typo is refused, not ignored
    ("FACEAPI_ENGINE", "gpu"),
    ("FACEAPI_ORIENTATION_SEARCH", "maybe"),
    ("FACEAPI_MAX_IMAGE_BYTES", "lots"),
    ("FACEAPI_MAX_IMAGE_BYTES", "10"),
    ("FACEAPI_AWS_READ_TIMEOUT", "nan"),
    ("FACEAPI_AWS_READ_TIMEOUT", "inf"),
    ("FACEAPI_AWS_READ_TIMEOUT", "-1"),
    ("FACEAPI_IMAGE_FORMATS", "jpeg,tiff"),
])
def test_a_bad_value_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name.removeprefix("FACEAPI_")):
        Settings.from_env({name: value})


def test_variables_of_other_processes_are_allowed_and_ignored() -> None:
    settings = Settings.from_env({"FACEAPI_BIND": "0.0.0.0:9", "FACEAPI_WORKERS": "4",
                                  "FACEAPI_FACES_DIR": "/data", "FACEAPI_TEST_DB": "sqlite"})
    assert settings == Settings()
