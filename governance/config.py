"""Typed settings: defaults, then ``instance/config.toml``, then ``GOVERNANCE_*`` environment variables.

Settings fail fast: an unknown key or a value of the wrong type stops the app with a message that
names the source and the key, and the web app refuses to serve with a missing or default secret key
unless it runs in debug or demo mode.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "GOVERNANCE_"
CONFIG_FILE_NAME = "config.toml"
#: Secret keys that must never protect a real deployment.
KNOWN_INSECURE_SECRETS = frozenset({"", "dev", "change-me", "changeme", "secret", "demo"})


class ConfigError(Exception):
    """A setting is missing, unknown or malformed; the message names where it came from."""


@dataclass(frozen=True)
class Settings:
    #: Folder for the SQLite database, the signing key, dossiers and ``config.toml``.
    instance_path: Path
    secret_key: str = ""
    #: SQLAlchemy URL; empty means ``sqlite:///<instance>/governance.sqlite3``.
    database_url: str = ""
    debug: bool = False
    #: Demo mode allows the deterministic demo audit backend and demo accounts.
    demo_mode: bool = False
    institution_name: str = "Example University Hospital"
    institution_name_zh: str = "示例大学附属医院"
    #: Where the rule files, checklists and dossier templates are read from (editable by compliance).
    regulations_dir: Path = PROJECT_ROOT / "regulations"
    checklists_dir: Path = PROJECT_ROOT / "checklists"
    reports_dir: Path = PROJECT_ROOT / "reports"
    #: Celery broker; empty runs audits in an in-process worker thread.
    broker_url: str = ""
    #: "thread" (background worker thread), "inline" (inside the caller: CLI and tests) or "queue" (left
    #: queued for ``govern audit resume`` or a worker).
    audit_dispatch: str = "thread"
    #: Where gate dossiers are rendered and signed: "thread", "inline" or "queue" (as audits).
    dossier_dispatch: str = "thread"
    #: The item bank gate audits use: "builtin" or a path to a JSONL file or folder.
    audit_items: str = "builtin"
    #: Language the gate audit asks in ("zh" or "en").
    audit_lang: str = "zh"
    audit_concurrency: int = 16
    #: Results persisted per batch (a killed audit loses at most one batch of work, never a result).
    audit_batch: int = 100
    #: vLLM engine options for gate audits of local model paths.
    vllm_tensor_parallel_size: int = 1
    vllm_pipeline_parallel_size: int = 1
    vllm_distributed_executor_backend: str = ""
    vllm_gpu_memory_utilization: str = "0.9"
    vllm_max_model_len: int = 0
    #: Signing key: a PKCS#12 file (default: the instance's own, created by ``govern keys init``).
    signing_pkcs12: str = ""
    signing_passphrase: str = ""
    trust_roots: tuple[str, ...] = ()
    tsa_url: str = ""
    #: Seconds between monitoring passes of ``govern scheduler run`` and Celery beat.
    scheduler_interval: int = 300
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_sender: str = "irb@localhost"
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    #: Base URL used in e-mails and by API clients.
    server_name_url: str = "http://127.0.0.1:5000"
    session_cookie_secure: bool = False
    default_locale: str = "en"
    login_max_failures: int = 5
    login_lockout_minutes: int = 15
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.instance_path / 'governance.sqlite3'}"

    @property
    def secret_is_insecure(self) -> bool:
        return self.secret_key.strip().lower() in KNOWN_INSECURE_SECRETS or len(self.secret_key) < 16

    def require_secure_secret(self) -> None:
        """Refuse to serve real users with a guessable session key."""
        if self.secret_is_insecure and not (self.debug or self.demo_mode):
            raise ConfigError(
                "secret_key is missing or a known default: run `govern init` (it writes a random key to "
                f"{self.instance_path / CONFIG_FILE_NAME}) or set GOVERNANCE_SECRET_KEY"
            )


_FIELDS = {f.name: f for f in fields(Settings) if f.name not in {"instance_path", "extra"}}


def resolve_instance_path(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get(f"{ENV_PREFIX}INSTANCE") or "instance"
    return Path(raw).expanduser().resolve()


def _coerce(name: str, value: Any, source: str) -> Any:
    """Convert a raw value to the declared type of setting ``name`` or say precisely why not."""
    kind = _FIELDS[name].type
    try:
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in {"1", "true", "yes", "on"}:
                return True
            if text in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError("expected true or false")
        if kind == "int":
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            return int(value)
        if kind == "Path":
            return Path(str(value)).expanduser().resolve()
        if kind == "tuple[str, ...]":
            if isinstance(value, (list, tuple)):
                return tuple(str(v) for v in value)
            return tuple(part.strip() for part in str(value).split(",") if part.strip())
        if not isinstance(value, (str, int, float)):
            raise ValueError("expected a string")
        return str(value)
    except ValueError as exc:
        raise ConfigError(f"{source}: setting '{name}': {exc} (got {value!r})") from None


def load_settings(instance_path: Path, overrides: dict[str, Any] | None = None,
                  environ: dict[str, str] | None = None) -> Settings:
    """Build settings from defaults, the instance ``config.toml``, the environment and ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    config_file = instance_path / CONFIG_FILE_NAME
    if config_file.exists():
        try:
            data = tomllib.loads(config_file.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_file}: {exc}") from None
        for key, value in data.items():
            if key not in _FIELDS:
                raise ConfigError(f"{config_file}: unknown setting '{key}'")
            values[key] = _coerce(key, value, str(config_file))
    for env_key, value in environ.items():
        if not env_key.startswith(ENV_PREFIX) or env_key in {f"{ENV_PREFIX}INSTANCE", f"{ENV_PREFIX}TOKEN"}:
            continue  # TOKEN: the API token `govern submit` reads, not a setting
        if env_key.startswith(f"{ENV_PREFIX}TEST_"):
            continue  # settings of the test suite, not of the app
        key = env_key[len(ENV_PREFIX):].lower()
        if key not in _FIELDS:
            raise ConfigError(f"environment: unknown setting {env_key}")
        values[key] = _coerce(key, value, f"environment {env_key}")
    for key, value in (overrides or {}).items():
        if key not in _FIELDS:
            raise ConfigError(f"test_config: unknown setting '{key}'")
        values[key] = _coerce(key, value, "test_config")
    settings = Settings(instance_path=instance_path, **values)
    for name in ("audit_dispatch", "dossier_dispatch"):
        if getattr(settings, name) not in {"thread", "inline", "queue"}:
            raise ConfigError(f"setting '{name}' must be thread, inline or queue, got {getattr(settings, name)!r}")
    return settings


def write_instance_config(instance_path: Path, updates: dict[str, Any]) -> Path:
    """Merge ``updates`` into the instance ``config.toml`` (flat keys only), keeping other keys."""
    config_file = instance_path / CONFIG_FILE_NAME
    current: dict[str, Any] = {}
    if config_file.exists():
        current = tomllib.loads(config_file.read_text(encoding="utf-8"))
    current.update(updates)
    lines = ["# Settings of this instance. Environment variables GOVERNANCE_<NAME> override them."]
    for key in sorted(current):
        if key not in _FIELDS:
            raise ConfigError(f"{config_file}: unknown setting '{key}'")
        lines.append(f"{key} = {_toml_value(current[key])}")
    config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config_file.chmod(0o600)
    return config_file


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def as_public_dict(settings: Settings) -> dict[str, Any]:
    """Settings without secrets, for ``govern config show`` and the admin page."""
    hidden = {"secret_key", "signing_passphrase", "smtp_password"}
    out = {}
    for key, value in dataclasses.asdict(settings).items():
        if key in hidden:
            out[key] = "(set)" if value else "(empty)"
        else:
            out[key] = str(value) if isinstance(value, Path) else value
    return out
