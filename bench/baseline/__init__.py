"""The plain Litestar + SQLAlchemy app that Strongroom is compared with (see app.py)."""
