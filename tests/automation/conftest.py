"""Shared helpers for the automation layer's unit tests (no engine, no cluster)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pulumi.automation import EngineEvent

FIXTURES = Path(__file__).parent / "fixtures"


def load_events(name: str) -> list[EngineEvent]:
    """Engine events recorded from the real v3.259.0 CLI (`--event-log`), see fixtures/README.md."""
    with open(FIXTURES / f"{name}.jsonl", encoding="utf-8") as handle:
        return [EngineEvent.from_json(json.loads(line)) for line in handle if line.strip()]


@pytest.fixture
def preview_update_events() -> list[EngineEvent]:
    return load_events("preview_update")


@pytest.fixture
def drift_events() -> list[EngineEvent]:
    return load_events("drift_refresh")


@pytest.fixture
def policy_events() -> list[EngineEvent]:
    return load_events("preview_policy")
