"""Sizes of what staff may send at once (one place for each number)."""

MAX_TEXT = 2000  # characters of one free-text field of an action
MAX_BULK = 200  # requests one bulk action may touch
