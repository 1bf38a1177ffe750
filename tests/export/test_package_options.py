"""`voxseg export`'s package options: authors, licence and citations are checked as they are typed."""

from __future__ import annotations

import pytest

from voxseg.config import ExportConfig
from voxseg.config.export import citation, entries
from voxseg.errors import ConfigError


def test_citations_take_a_doi_bare_or_as_a_link_or_a_url() -> None:
    assert citation("Doe et al. 2025 10.1234/abcd") == ("Doe et al. 2025", "10.1234/abcd", None)
    assert citation("Doe 2025 https://doi.org/10.1234/abcd") == ("Doe 2025", "10.1234/abcd", None)
    assert citation("Lab page https://example.org/lab") == ("Lab page", None, "https://example.org/lab")
    for bad in ("10.1234/abcd", "Doe et al. 2025", "Doe 2025 doi:10.1234/abcd"):
        with pytest.raises(ConfigError, match="--cite: .* must be TEXT then a DOI or URL"):
            citation(bad)


def test_several_authors_and_citations_are_separated_by_semicolons() -> None:
    assert entries(" Ada Lovelace ;Alan Turing; ") == ["Ada Lovelace", "Alan Turing"]
    config = ExportConfig(
        run=".",
        output="m.zip",
        format="bioimageio",
        authors="Ada Lovelace ;Alan Turing",
        cite="A 10.1234/a;B 10.1234/b",
    ).resolved()
    assert config.authors == "Ada Lovelace; Alan Turing" and config.cite == "A 10.1234/a; B 10.1234/b"
    assert config.resolved() == config  # a resolved config parses to itself (YAML round trip)


def test_package_fields_are_refused_for_files_that_cannot_hold_them() -> None:
    with pytest.raises(
        ConfigError, match="--license: only a --format bioimageio package holds it, not --format onnx"
    ):
        ExportConfig(run=".", output="m.onnx", license="MIT").resolved()
