"""The document types a case must carry, as data: ``checklists/documents/required_documents.yaml``.

Each type is required for some submission kinds and, optionally, only when a condition over the descriptor and
the classification holds (the checklists' condition language). Any file may also be attached as ``other``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from .. import datafiles
from ..checklists import checklist_vocabulary
from ..classification.conditions import ALWAYS, Condition, parse_condition
from ..datafiles import DataFileError, StrictModel
from ..sources import Source, Text

#: Where the file lies under the checklists folder (a folder of its own: every ``checklists/*.yaml`` is a checklist).
REQUIRED_DOCUMENTS_FILE = Path("documents") / "required_documents.yaml"
#: The type of a document no rule asks for.
OTHER = "other"
OTHER_TITLE = Text(en="Other document", zh="其他文件")


class DocumentTypeSchema(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,38}$")
    title: Text
    kinds: list[Literal["initial", "change", "continuing", "incident"]] = Field(min_length=1)
    applies_when: dict[str, Any] | None = None
    sources: list[Source] = []


class RequiredDocumentsSchema(StrictModel):
    version: str
    documents: list[DocumentTypeSchema] = Field(min_length=1)


@dataclass(frozen=True)
class DocumentType:
    id: str
    title: Text
    kinds: tuple[str, ...]
    condition: Condition
    sources: tuple[Source, ...]

    def required_for(self, kind: str, facts: dict[str, Any]) -> bool:
        return kind in self.kinds and self.condition.holds(facts)


@dataclass(frozen=True)
class DocumentTypes:
    version: str
    types: tuple[DocumentType, ...]

    @property
    def ids(self) -> tuple[str, ...]:
        """Every type a document may be attached as, ``other`` last."""
        return (*(t.id for t in self.types), OTHER)

    def title(self, type_id: str) -> Text:
        return next((t.title for t in self.types if t.id == type_id), OTHER_TITLE)

    def required(self, kind: str, facts: dict[str, Any]) -> list[DocumentType]:
        return [t for t in self.types if t.required_for(kind, facts)]


def load_document_types_file(path: Path) -> DocumentTypes:
    tree = datafiles.load_yaml(path)
    schema = datafiles.validate(tree, RequiredDocumentsSchema, path)
    vocabulary = checklist_vocabulary()
    seen: set[str] = set()
    types = []
    for index, entry in enumerate(schema.documents):
        node = tree["documents"][index]
        if entry.id in seen or entry.id == OTHER:
            raise DataFileError(path, node.line_of("id"), f"documents[{index}].id",
                                f"'{entry.id}' is {'reserved' if entry.id == OTHER else 'used twice'}")
        seen.add(entry.id)
        condition = ALWAYS
        if entry.applies_when is not None:
            condition = parse_condition(node["applies_when"], vocabulary, str(path), f"documents[{index}].applies_when")
        types.append(DocumentType(entry.id, entry.title, tuple(entry.kinds), condition, tuple(entry.sources)))
    return DocumentTypes(schema.version, tuple(types))


@lru_cache(maxsize=4)
def _cached(path: Path, stamp: int) -> DocumentTypes:
    return load_document_types_file(path)


def load_document_types(checklists_dir: Path) -> DocumentTypes:
    """The instance's document types (re-read when the file changes)."""
    path = checklists_dir / REQUIRED_DOCUMENTS_FILE
    return _cached(path, path.stat().st_mtime_ns)


@dataclass(frozen=True)
class Requirement:
    type: DocumentType
    #: The latest document of that type among those the case carries, if any.
    document: Any | None

    @property
    def present(self) -> bool:
        return self.document is not None


def requirements(types: DocumentTypes, kind: str, facts: dict[str, Any], documents: list) -> list[Requirement]:
    """The types a case of ``kind`` with ``facts`` must carry, each with the latest of ``documents`` (rows with
    ``id`` and ``doc_type``) that fulfils it."""
    latest: dict[str, Any] = {}
    for document in documents:
        if document.doc_type not in latest or document.id > latest[document.doc_type].id:
            latest[document.doc_type] = document
    return [Requirement(t, latest.get(t.id)) for t in types.required(kind, facts)]
