"""The API reference and the configuration page cover every public name, so a new export cannot be
left undocumented: docs/api.md renders it with mkdocstrings and docs/configuration.md links to it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy_vectorknobs as vk

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_every_public_name_has_an_api_entry_and_a_configuration_link() -> None:
    api = (DOCS / "api.md").read_text(encoding="utf-8")
    configuration = (DOCS / "configuration.md").read_text(encoding="utf-8")
    names = [n for n in vk.__all__ if n != "__version__"]
    assert len(names) > 80, names
    no_entry = [n for n in names if f"::: sqlalchemy_vectorknobs.{n}\n" not in api]
    no_link = [n for n in names if f"[sqlalchemy_vectorknobs.{n}]" not in configuration]
    assert not no_entry, f"add '::: sqlalchemy_vectorknobs.NAME' to docs/api.md for: {no_entry}"
    assert not no_link, f"link from docs/configuration.md ('Every public name') to: {no_link}"
    stale = [line for line in api.splitlines() if line.startswith("::: sqlalchemy_vectorknobs.")
             and line.split(".", 1)[1] not in vk.__all__]
    assert not stale, f"docs/api.md documents names the package no longer exports: {stale}"
