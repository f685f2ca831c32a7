"""The application: what a user can do, one module per family of actions. The CLI and the pages parse input,
call one function here per action and format what comes back; this is the one layer that combines the store,
the prompting core and local engine processes."""


def open_store(url: str | None = None):
    """The process-wide Store for the configured database (or `url`)."""
    from store import open_store as _open

    return _open(url)


def database_label() -> str:
    """The configured database URL, safe to show (any password replaced)."""
    from settings import get_settings
    from store import redact_url

    return redact_url(get_settings().database_url)
