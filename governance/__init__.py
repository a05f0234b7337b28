"""Ethics review (IRB) for the AI models hospitals deploy.

The web application is built by :func:`governance.app.create_app`; every process (web, Celery worker and
beat, CLI) assembles the same system with :func:`governance.system.assemble`. Importing this package does
nothing else, so the light ``govern submit`` client can run where the server's dependencies are absent.
"""

from .version import __version__

__all__ = ["__version__"]
