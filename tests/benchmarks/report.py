"""How the bench speaks: a section says what it measures, a step says what runs now (so a long run is never
silent), and each figure comes with what it means."""

from __future__ import annotations

from collections.abc import Sequence

INDENT = "   "


def heading(line: str) -> None:
    print(line, flush=True)


def section(title: str, what: str) -> None:
    print(f"\n== {title}: {what}", flush=True)


def step(what: str) -> None:
    print(f"{INDENT}... {what}", flush=True)


def figure(name: str, value: str, meaning: str) -> None:
    print(f"{INDENT}{name}: {value}  ({meaning})", flush=True)


def goal(name: str, value: float, most: float, meaning: str) -> None:
    """A figure with a goal: said met, or flagged MISSED where nobody can read past it."""
    verdict = "met" if value <= most else "MISSED <<<"
    figure(name, f"{value:.2f}", f"goal at most {most:g}: {verdict}; {meaning}")


def note(line: str) -> None:
    print(f"{INDENT}{line}", flush=True)


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A Markdown table, as the README holds it."""
    print(f"\n| {' | '.join(header)} |\n|{' --- |' * len(header)}", flush=True)
    for row in rows:
        print(f"| {' | '.join(str(cell) for cell in row)} |", flush=True)
    print(flush=True)
