"""The Flask extensions the web pages and the API share, configured by :func:`governance.app.create_app`."""

from __future__ import annotations

from flask_babel import Babel
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
login_manager = LoginManager()
babel = Babel()
#: Throttles sign-in and re-authentication only (no default limits). Storage: Redis when ``broker_url`` is a
#: Redis URL (every web process shares the counts), memory otherwise (one process).
limiter = Limiter(get_remote_address, default_limits=[], headers_enabled=True, key_prefix="governance")
