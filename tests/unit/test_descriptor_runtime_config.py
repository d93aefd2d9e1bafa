"""FACEAPI_DESCRIPTOR_RUNTIME / FACEAPI_DESCRIPTOR_THREADS: read once, validated at start."""

from __future__ import annotations

import pytest

from faceapi.config import ConfigError, Settings


def test_the_onnx_runtime_with_one_thread_is_the_default() -> None:
    settings = Settings.from_env({})
    assert (settings.descriptor_runtime, settings.descriptor_threads) == ("onnx", 1)


def test_the_runtime_and_threads_are_read_from_the_environment() -> None:
    settings = Settings.from_env({"FACEAPI_DESCRIPTOR_RUNTIME": "dlib",
                                  "FACEAPI_DESCRIPTOR_THREADS": "2"})
    assert (settings.descriptor_runtime, settings.descriptor_threads) == ("dlib", 2)


@pytest.mark.parametrize(("name", "value"), [
    ("FACEAPI_DESCRIPTOR_RUNTIME", "tensorflow"),
    ("FACEAPI_DESCRIPTOR_RUNTIME", "ONNX "),
    ("FACEAPI_DESCRIPTOR_THREADS", "0"),
    ("FACEAPI_DESCRIPTOR_THREADS", "65"),
    ("FACEAPI_DESCRIPTOR_THREADS", "two"),
])
def test_a_bad_runtime_setting_stops_the_start_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})
