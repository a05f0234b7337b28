"""Digests of model folders: what a decision approves and a re-audit checks.

The weights digest is sha256 over every regular file of the model folder (hidden files excepted), in
order of relative path, each contributing its path, size and own sha256; the tokenizer digest does the
same over the tokenizer and chat-template files only. Renaming, adding or changing any file changes it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

TOKENIZER_PATTERNS = ("tokenizer*", "vocab*", "merges.txt", "special_tokens_map.json", "chat_template*",
                      "*.tiktoken", "added_tokens.json")
_CHUNK = 8 * 1024 * 1024


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted((p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".")
                   for part in p.relative_to(folder).parts)), key=lambda p: p.relative_to(folder).as_posix())


def _digest(folder: Path, files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        relative = path.relative_to(folder).as_posix()
        digest.update(f"{relative}\0{path.stat().st_size}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()


def weights_digest(folder: Path | str) -> str:
    folder = Path(folder)
    files = _files(folder)
    if not files:
        raise FileNotFoundError(f"{folder} holds no files")
    return _digest(folder, files)


def tokenizer_digest(folder: Path | str) -> str:
    folder = Path(folder)
    files = [p for p in _files(folder) if any(p.match(pattern) for pattern in TOKENIZER_PATTERNS)]
    return _digest(folder, files) if files else ""


def model_id(name: str) -> str:
    """A base model's Hugging Face id as submitted: without a hub URL or surrounding slashes."""
    cleaned = name.strip()
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf://"):
        if cleaned.lower().startswith(prefix):
            cleaned = cleaned[len(prefix):]
    return cleaned.strip("/")


def same_base_model(first: str, second: str) -> bool:
    """Whether two records name the same base model: equal ids ignoring case (the hub resolves them so), or one
    named without its organisation (``Qwen2.5-7B-Instruct`` for ``Qwen/Qwen2.5-7B-Instruct``, as a web form
    may record it)."""
    a, b = model_id(first).lower(), model_id(second).lower()
    if a == b:
        return True
    if ("/" in a) == ("/" in b):
        return False
    return a.rsplit("/", 1)[-1] == b.rsplit("/", 1)[-1]
