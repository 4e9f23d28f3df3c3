"""Small helpers for text meant for people."""


def counted(n: int, noun: str) -> str:
    """"1 epoch", "2 epochs": a count with its noun in the right number (nouns ending in -s)."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
