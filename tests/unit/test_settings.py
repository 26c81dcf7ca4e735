"""Settings: every one documented, every one read by the code, docs generated from them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import BaseModel

from cli.main import main
from wardwatch.settings import Settings, TopicNames, reference, reference_markdown

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ["wardwatch", "cli", "simulator", "agents", "alerts", "models", "trainer", "benchmarks"]
DOCS = [
    ROOT / "README.md",
    ROOT / "docker-compose.yml",
    ROOT / "Dockerfile",
    *(ROOT / "docs").glob("*.md"),
]


def _fields(model: type[BaseModel]) -> list[tuple[str, type[BaseModel]]]:
    out = []
    for name, field in model.model_fields.items():
        out.append((name, model))
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _fields(ann)
    return out


def _product_source() -> str:
    texts = []
    for pkg in PRODUCT:
        texts += [path.read_text() for path in (ROOT / pkg).rglob("*.py")]
    return "\n".join(texts)


def test_configuration_page_is_generated_from_the_settings() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == reference_markdown(), (
        "run: wardwatch settings --markdown > docs/configuration.md"
    )


def test_every_setting_has_a_description() -> None:
    missing = [env for env, _, desc in reference() if not desc.strip()]
    assert missing == []


def test_every_setting_is_read_by_the_product() -> None:
    source = _product_source()
    # every topic name is read at once where the topics are created
    topics_all = "topics.all()" in source
    unread = [
        f"{model.__name__}.{name}"
        for name, model in _fields(Settings)
        if not re.search(rf"\.{name}\b", source) and not (model is TopicNames and topics_all)
    ]
    assert unread == []


def test_every_variable_the_docs_name_is_a_setting() -> None:
    known = {env for env, _, _ in reference()}
    named: set[str] = set()
    for doc in DOCS:
        named |= set(re.findall(r"\bWARDWATCH_[A-Z0-9_]*[A-Z0-9]", doc.read_text()))
    # prefixes that docs use for a group (WARDWATCH_TOPICS__...) are fine
    unknown = {n for n in named if n not in known and not any(k.startswith(n) for k in known)}
    assert unknown == set()


def test_settings_command_prints_the_reference(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert capsys.readouterr().out == reference_markdown()


def test_settings_command_masks_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDWATCH_API_TOKEN", "s3cret-token")
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "s3cret-token" not in out and '"api_token": "**********"' in out
