"""docs/config.md is generated from the config dataclasses' metadata, and it is current and complete."""

from conftest import REPO

from launch.config_reference import SECTIONS, reference, rows


def test_docs_config_md_is_current():
    assert (REPO / "docs" / "config.md").read_text() == reference(), (
        "docs/config.md is out of date: run `make docs` (python -m launch.config_reference > docs/config.md)"
    )


def test_every_config_field_says_what_it_does():
    undocumented = [key for _, schema, _ in SECTIONS for key, _, _, meaning in rows(schema) if not meaning.strip()]
    assert undocumented == [], f"config fields without help text: {undocumented}"
