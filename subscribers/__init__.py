"""The audience domain: subscribers, their topics and consent, lifecycle and tokens.

Stands on its own like a reusable app: it takes a database session and the values it needs
as arguments and imports nothing from `newsletter`.
"""
