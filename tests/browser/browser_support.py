"""Helpers for the browser tests (a module of its own: a name no other test folder uses)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "test-artifacts" / "screenshots"


def shot(page, name: str, full_page: bool = True) -> Path:
    """Save a screenshot under test-artifacts/screenshots/ (gitignored)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


# The scripted assistant both web-call page tests talk to.
MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [{"keywords": ["table", "book", "people"], "reply": "Sure, for how many people?"}],
}
ASSISTANT = {
    "model": MODEL,
    "firstMessageMode": "assistant-speaks-first",
    "firstMessage": "Hello, this is the Harbour Bistro.",
}
