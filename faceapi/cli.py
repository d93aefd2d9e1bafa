"""The `faceapi` command. Subcommands live next to what they operate on and are
registered here; each builds its own Settings from the environment once."""

from __future__ import annotations

import click

from faceapi import __version__


@click.group()
@click.version_option(__version__, prog_name="faceapi")
def cli() -> None:
    """faceapi: face verification under named policies, with review and audit."""


def _register() -> None:
    # Imported here, not at module top, so `faceapi --help` works even while one
    # subsystem's optional dependency is missing, and each group stays self-contained.
    import importlib

    for module_name, attr in (
        ("faceapi.store.cli", "db"),
        ("faceapi.audit_cli", "audit"),
        ("faceapi.auth_cli", "keys"),
        ("faceapi.policies_cli", "policies"),
        ("faceapi.import_cli", "import_cmd"),
        ("faceapi.collections_cli", "collections"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        cli.add_command(getattr(module, attr))


_register()


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
