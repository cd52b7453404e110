"""Errors meant for people: the CLI prints their message as one sentence and exits 2."""


class UserError(Exception):
    """Bad input from the user (a path, a flag, a space file); the message names the culprit."""
