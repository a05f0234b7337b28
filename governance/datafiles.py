"""Strict loading of the project's data files (rules, checklists, policies, committee rules).

YAML is parsed with the safe loader into plain dicts and lists that remember the line of every key,
then validated against a pydantic schema that forbids unknown keys and coerces nothing. Any error is
reported as ``file:line: key 'a.b[2].c': message`` so compliance staff can fix their own edits.
Nothing in a data file is ever executed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Strict, ValidationError

from .errors import DataFileError

T = TypeVar("T", bound=BaseModel)
__all__ = ["MAX_YAML_BYTES", "DataFileError", "StrictModel", "file_sha256", "load", "load_yaml", "locate", "parse_yaml",
           "safe_load", "validate"]


#: Annotate enum fields with this: strict mode would refuse the plain strings YAML gives.
FROM_STRING = Strict(False)


class StrictModel(BaseModel):
    """Base of every data-file schema: frozen, no unknown keys, no silent coercion."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class LocatedDict(dict):
    """A mapping that remembers the line of each key (1-based) and its own line."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)


class LocatedList(list):
    line: int = 0
    item_lines: list


#: The largest YAML text read (a descriptor, a rule file, a checklist, a policy): larger is refused unparsed.
MAX_YAML_BYTES = 2 * 1024 * 1024
#: The deepest nesting of mappings and lists in a YAML file.
MAX_YAML_DEPTH = 64


class _LimitedLoader(yaml.SafeLoader):
    """The safe loader without aliases and with a nesting limit: an alias (``*name``) could expand a small file
    into an exponentially large tree (a "billion laughs"), so none is accepted; no data file needs one."""

    name: str = "<string>"
    _depth: int = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise DataFileError(self.name, event.start_mark.line + 1, None,
                                f"YAML aliases (*{event.anchor}) are not accepted: write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise DataFileError(self.name, mark.line + 1, None,
                                    f"nested more than {MAX_YAML_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _LineLoader(_LimitedLoader):
    """The limited safe loader, building located containers (no tags beyond YAML's core schema)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> LocatedDict:
    result = LocatedDict()
    result.line = node.start_mark.line + 1
    result.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in result:
            raise DataFileError(loader.name, key_node.start_mark.line + 1, str(key), "duplicate key")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_lines[key] = key_node.start_mark.line + 1
    return result


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> LocatedList:
    result = LocatedList(loader.construct_object(child, deep=True) for child in node.value)
    result.line = node.start_mark.line + 1
    result.item_lines = [child.start_mark.line + 1 for child in node.value]
    return result


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml(path: Path) -> Any:
    """Parse a YAML file into located dicts and lists, or raise :class:`DataFileError`."""
    try:
        if path.stat().st_size > MAX_YAML_BYTES:
            raise DataFileError(path, None, None, f"larger than {MAX_YAML_BYTES // 1024} KiB: not read")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataFileError(path, None, None, f"cannot read: {exc.strerror}") from None
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path | str = "<string>") -> Any:
    """Parse YAML text into located dicts and lists, or raise :class:`DataFileError` (aliases, more than
    ``MAX_YAML_BYTES`` or ``MAX_YAML_DEPTH`` levels are refused)."""
    return _parse(_LineLoader, text, path)


def safe_load(text: str, path: Path | str = "<string>") -> Any:
    """``yaml.safe_load`` with the same limits as :func:`parse_yaml`, giving plain dicts and lists."""
    return _parse(_LimitedLoader, text, path)


def _parse(loader_class: type[_LimitedLoader], text: str, path: Path | str) -> Any:
    if len(text) > MAX_YAML_BYTES or len(text.encode("utf-8")) > MAX_YAML_BYTES:
        raise DataFileError(path, None, None, f"larger than {MAX_YAML_BYTES // 1024} KiB: not read")
    loader = loader_class(text)
    loader.name = str(path)
    try:
        return loader.get_single_data()
    except DataFileError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise DataFileError(path, mark.line + 1 if mark else None, None,
                            f"not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise DataFileError(path, None, None, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def locate(tree: Any, loc: Iterable[Any]) -> tuple[int | None, str]:
    """Find the line of a pydantic error location in a located tree, and its dotted key."""
    node, line, parts = tree, getattr(tree, "line", None), []
    for part in loc:
        if isinstance(node, dict) and part in node:  # a located mapping, or a plain one (JSON from the API)
            line = node.line_of(part) if isinstance(node, LocatedDict) else line
            node = node[part]
            parts.append(str(part))
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            line = node.item_lines[part] if isinstance(node, LocatedList) else line
            node = node[part]
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        elif isinstance(node, dict) and isinstance(part, str):
            parts.append(part)  # a missing or unknown key: the mapping's own line
            break
        else:
            continue  # pydantic's union/tag markers
    return line, ".".join(parts)


def validate(tree: Any, schema: type[T], path: Path | str) -> T:
    """Validate a parsed tree against ``schema``; the first error names file, line and key."""
    try:
        return schema.model_validate(tree)
    except ValidationError as exc:
        error = exc.errors()[0]
        line, key = locate(tree, error["loc"])
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown key"
        elif error["type"] == "missing":
            message = "required key is missing"
        elif "input" in error and error["type"] not in {"value_error", "assertion_error"}:
            shown = repr(error["input"])
            message = f"{message} (got {shown[:80] + '…' if len(shown) > 80 else shown})"
        raise DataFileError(path, line, key or None, message) from None


def load(path: Path, schema: type[T]) -> T:
    return validate(load_yaml(path), schema, path)


def file_sha256(paths: Iterable[Path]) -> str:
    """One digest over several files (sorted by name): the version of a rule set as deployed."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()
