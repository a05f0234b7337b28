"""The WSGI entry point: ``gunicorn app:app``."""

from governance.app import create_app

app = create_app()
