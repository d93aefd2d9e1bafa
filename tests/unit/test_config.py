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


def _production(tmp_path: Path, **keys: str) -> Settings:
    return Settings(env="production", data_dir=tmp_path / "data", **keys)


def _outside_keys(tmp_path: Path) -> dict[str, str]:
    secrets_dir = tmp_path / "secrets"
    return {"audit_signing_key": str(secrets_dir / "audit_signing_key.pem"),
            "credentials_key_file": str(secrets_dir / "credentials.key"),
            "secret_key_file": str(secrets_dir / "console_secret_key")}


def test_production_refuses_to_start_without_keys_and_says_which_and_how(
        tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        _production(tmp_path).require_production_keys()
    message = str(refused.value)
    for setting in ("FACEAPI_AUDIT_SIGNING_KEY", "FACEAPI_CREDENTIALS_KEY_FILE",
                    "FACEAPI_SECRET_KEY_FILE", "FACEAPI_SECRET_KEY"):
        assert setting in message
    assert "openssl genpkey -algorithm ed25519" in message
    assert "outside the data directory" in message


@pytest.mark.parametrize("inside", ["audit_signing_key", "credentials_key_file",
                                    "secret_key_file"])
def test_production_refuses_a_key_file_inside_the_data_directory(
        tmp_path: Path, inside: str) -> None:
    keys = _outside_keys(tmp_path)
    keys[inside] = str(tmp_path / "data" / "keys" / "some.key")
    with pytest.raises(ConfigError, match="is inside the data directory") as refused:
        _production(tmp_path, **keys).require_production_keys()
    assert f"FACEAPI_{inside.upper()}=" in str(refused.value)


def test_production_starts_with_every_key_outside_the_data_directory(tmp_path: Path) -> None:
    _production(tmp_path, **_outside_keys(tmp_path)).require_production_keys()
    keys = _outside_keys(tmp_path)
    del keys["secret_key_file"]
    _production(tmp_path, secret_key="s" * 48, **keys).require_production_keys()


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_and_test_keep_generating_keys_in_the_data_dir(
        tmp_path: Path, env: str) -> None:
    # `make serve` (development): keys are made in the data dir on first start, as before.
    Settings(env=env, data_dir=tmp_path / "data").require_production_keys()


def test_bootstrap_refuses_a_production_start_with_keys_in_the_data_dir(
        tmp_path: Path) -> None:
    from faceapi.bootstrap import bootstrap

    with pytest.raises(ConfigError, match="FACEAPI_AUDIT_SIGNING_KEY"):
        bootstrap(_production(tmp_path))
