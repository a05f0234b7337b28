"""Limits every request meets before a page or an API endpoint reads it.

- The body: at most ``max_request_bytes`` (Flask's ``MAX_CONTENT_LENGTH``; larger gets 413); a view marked with
  :func:`accepts_documents` (a document's upload form) reads up to ``document_max_bytes`` and its form around it.
- JSON: at most ``max_json_depth`` levels of arrays and objects (deeper gets 400, never a ``RecursionError``).
- Text: no C0 control character but tab, line feed and carriage return, in any query parameter, form field or
  JSON string or key (PostgreSQL cannot store NUL, and none of them belongs in what a person types). The 400
  names the field.

Per-field length limits are declared once in :mod:`governance.schemas` (and the workflow's field specs built on
it) and checked by the forms, the API models and the engine alike.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Flask, abort, current_app, jsonify, request
from flask.json.provider import DefaultJSONProvider
from flask_babel import gettext as _
from werkzeug.exceptions import BadRequest

#: C0 controls other than tab (\x09), line feed (\x0a) and carriage return (\x0d).
CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")
DEFAULT_MAX_JSON_DEPTH = 32


class InputRefused(ValueError):
    """A request value the app does not read: ``field`` names where it is, ``reason`` says why (English)."""

    def __init__(self, field: str, reason: str, kind: str):
        super().__init__(f"{field}: {reason}" if field else reason)
        self.field, self.reason, self.kind = field, reason, kind


def json_depth_error(value: Any, max_depth: int) -> InputRefused | None:
    """Walk a parsed JSON value without recursion; the first place nested deeper than ``max_depth``."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, dict):
            items = node.items()
        elif isinstance(node, list):
            items = enumerate(node)
        else:
            continue
        if depth > max_depth:
            return InputRefused(where, f"nested more than {max_depth} levels deep", "depth")
        for key, child in items:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1, _join(where, key)))
    return None


def control_character_error(value: Any, where: str = "") -> InputRefused | None:
    """The first string (or object key) in ``value`` holding a C0 control character other than tab, LF, CR."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            found = CONTROL_CHARACTERS.search(node)
            if found:
                code = ord(found.group())
                named = "NUL (U+0000)" if code == 0 else f"U+{code:04X}"
                return InputRefused(path, f"contains the control character {named}, which is not accepted", "control")
        elif isinstance(node, dict):
            for key, child in node.items():
                if isinstance(key, str) and CONTROL_CHARACTERS.search(key):
                    return InputRefused(_join(path, key), "a key contains a control character, which is not accepted",
                                        "control")
                stack.append((child, _join(path, key)))
        elif isinstance(node, list):
            stack.extend((child, _join(path, i)) for i, child in enumerate(node))
    return None


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class LimitedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, refusing (as a ``ValueError``, which ``get_json`` reports as a bad request) what is nested too
    deeply instead of overflowing the stack."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        max_depth = self._app.config.get("GOVERNANCE_MAX_JSON_DEPTH", DEFAULT_MAX_JSON_DEPTH)
        try:
            value = json.loads(s, **kwargs)
        except RecursionError:
            raise InputRefused("", f"nested more than {max_depth} levels deep", "depth") from None
        problem = json_depth_error(value, max_depth)
        if problem is not None:
            raise problem
        return value


def _refuse(problem: InputRefused):
    """400 naming the field: JSON on the API, the error page elsewhere."""
    if request.path.startswith("/api/"):
        body = {"error": str(problem), "status": 400}
        if problem.field:
            body["field"] = problem.field
        return jsonify(body), 400
    if problem.kind == "depth":
        message = _("The request is nested too deeply (%(field)s).", field=problem.field or _("body"))
    else:
        message = _("%(field)s contains a control character, which is not accepted.", field=problem.field)
    abort(400, description=message)


#: What an upload form sends besides the file (its other fields and the multipart framing).
UPLOAD_FORM_OVERHEAD = 64 * 1024


def accepts_documents(view):
    """Mark a view that receives a document upload: its request body may be as large as a document."""
    view.accepts_documents = True
    return view


def _raise_limit_for_uploads() -> None:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    if getattr(view, "accepts_documents", False):
        settings = current_app.config["GOVERNANCE"]
        request.max_content_length = max(settings.max_request_bytes,
                                         settings.document_max_bytes + UPLOAD_FORM_OVERHEAD)


def check_request():
    """Refuse a request whose query, form or JSON holds a control character or JSON nested too deeply."""
    _raise_limit_for_uploads()
    problem = _fields_problem(request.args)
    if problem is not None:
        return _refuse(problem)
    if request.method in {"POST", "PUT", "PATCH", "DELETE"}:
        if request.is_json:
            try:
                body = request.get_json(silent=False)  # cached for the endpoint
            except BadRequest as exc:
                cause: BaseException | None = exc
                while cause is not None and not isinstance(cause, InputRefused):
                    cause = cause.__cause__ or cause.__context__
                if cause is not None:
                    return _refuse(cause)
                return None  # malformed JSON: the endpoint says what it expects
            problem = control_character_error(body)
        else:
            problem = _fields_problem(request.form)
        if problem is not None:
            return _refuse(problem)
    return None


def _fields_problem(fields) -> InputRefused | None:
    """The first query parameter or form field (a werkzeug ``MultiDict``) whose name or a value is refused."""
    for name, value in fields.items(multi=True):
        if CONTROL_CHARACTERS.search(name):
            return InputRefused(name.encode("unicode_escape").decode("ascii"),
                                "a parameter name contains a control character, which is not accepted", "control")
        problem = control_character_error(value, name)
        if problem is not None:
            return problem
    return None


def init_app(app: Flask) -> None:
    settings = app.config["GOVERNANCE"]
    app.config.setdefault("GOVERNANCE_MAX_JSON_DEPTH", settings.max_json_depth)
    app.json = LimitedJSONProvider(app)
    app.before_request_funcs.setdefault(None, []).insert(0, check_request)  # before anything reads the request
