"""Failures a person can act on. The CLI prints them as one message and exits 1."""


class NewsletterError(Exception):
    """An expected failure with a message that says what went wrong and what to do."""
