"""Typed settings: defaults, then ``instance/config.toml``, then ``GOVERNANCE_*`` environment variables,
then the overrides a test or command passes.

Every setting has a type and bounds (pydantic-settings). Settings fail fast: an unknown key or a value of
the wrong type or out of range stops the app with a message naming the source (the file, the environment
variable, or the overrides) and the key; the web app refuses to serve with a missing or default secret key
unless it runs in debug or demo mode.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import DirectoryPath, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings import TomlConfigSettingsSource

from .errors import ConfigError

__all__ = ["CONFIG_FILE_NAME", "ConfigError", "ENV_PREFIX", "PROJECT_ROOT", "Settings", "as_public_dict",
           "load_settings", "new_secret_key", "resolve_instance_path", "write_instance_config"]

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "GOVERNANCE_"
CONFIG_FILE_NAME = "config.toml"
#: Secret keys that must never protect a real deployment.
KNOWN_INSECURE_SECRETS = frozenset({"", "dev", "change-me", "changeme", "secret", "demo"})
#: GOVERNANCE_* variables that are not settings: the instance folder, the API token ``govern submit`` reads,
#: and the test suite's own (``GOVERNANCE_TEST_*``).
NOT_SETTINGS = ("INSTANCE", "TOKEN")
NOT_SETTINGS_PREFIXES = ("TEST_",)

#: How a job is run (see :mod:`governance.jobs`).
Dispatch = Literal["auto", "thread", "inline", "queue", "celery"]
Port = Annotated[int, Field(ge=1, le=65535)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid", frozen=True, env_prefix=ENV_PREFIX, validate_default=True)

    #: Folder for the SQLite database, the signing key, dossiers and ``config.toml``.
    instance_path: Path
    secret_key: SecretStr = SecretStr("")
    #: SQLAlchemy URL; empty means ``sqlite:///<instance>/governance.sqlite3``.
    database_url: str = Field(default="", pattern=r"^$|^(sqlite|postgresql)(\+[a-z0-9]+)?://")
    debug: bool = False
    #: Demo mode allows the deterministic demo audit backend and demo accounts.
    demo_mode: bool = False
    #: Changes to an active, approved deployment whose descriptor is unchanged since the approval are screened,
    #: classified and routed to their audit by the system (no human intake step), so ``govern submit --wait
    #: --until verdict`` returns when the audit decides. Everything else waits for the IRB office.
    auto_screen_changes: bool = False
    institution_name: str = Field(default="Example University Hospital", min_length=1, max_length=200)
    institution_name_zh: str = Field(default="示例大学附属医院", min_length=1, max_length=200)
    #: The letterhead under the institution's name on decision letters (committee, address, contact), one line
    #: per line of text (a TOML multi-line string); empty prints the name alone.
    letterhead: str = Field(default="", max_length=1000)
    letterhead_zh: str = Field(default="", max_length=1000)
    #: Where the rule files, checklists and dossier templates are read from (editable by compliance).
    regulations_dir: DirectoryPath = PROJECT_ROOT / "regulations"
    checklists_dir: DirectoryPath = PROJECT_ROOT / "checklists"
    reports_dir: DirectoryPath = PROJECT_ROOT / "reports"
    #: Celery broker (``redis://`` or ``amqp://``); empty runs jobs in this process.
    broker_url: str = Field(default="", pattern=r"^$|^(redis|rediss|amqp|amqps)://")
    #: How audits, dossiers and e-mail run: ``auto`` (Celery with a broker, else a thread), ``thread``,
    #: ``inline`` (inside the caller: CLI and tests), ``queue`` (left for the scheduler) or ``celery``.
    audit_dispatch: Dispatch = "auto"
    dossier_dispatch: Dispatch = "auto"
    mail_dispatch: Dispatch = "auto"
    #: Seconds before the broker gives an unacknowledged job (a worker that died) to another worker.
    job_visibility_timeout: int = Field(default=21600, ge=5, le=7 * 86400)
    #: Language the gate audit asks in.
    audit_lang: Literal["zh", "en"] = "zh"
    audit_concurrency: int = Field(default=16, ge=1, le=1024)
    #: Retries (with back-off) of one request to a model endpoint before the attempt stops with an error.
    audit_max_retries: int = Field(default=5, ge=0, le=10)
    #: Seconds one request to a model endpoint may take.
    audit_request_timeout: float = Field(default=120.0, gt=0, le=3600)
    #: Results persisted per batch (a killed audit loses at most one batch of work, never a result).
    audit_batch: int = Field(default=100, ge=1, le=10000)
    #: A runner's hold on an audit, renewed with every batch; a run whose lease lapses is taken over.
    audit_lease_seconds: int = Field(default=60, ge=5, le=3600)
    #: The item sets gate policies name, by name: ``builtin`` is the shipped bank; add an institution's own
    #: (e.g. ``medsafetybench = "/srv/banks/medsafetybench.jsonl"``).
    item_sets: dict[str, str] = {"builtin": "builtin"}
    #: The judge that grades behaviour and open answers: ``none`` (the keyword detector only), an OpenAI-compatible
    #: endpoint, vLLM in process (a local path) or ``demo`` (demo mode). It decides a criterion only when its
    #: stored validation record (``govern judge validate``) meets the policy's minimum; never the model under test.
    judge_backend: Literal["none", "openai", "vllm", "demo"] = "none"
    judge_model: str = Field(default="", max_length=500)
    judge_base_url: str = Field(default="", pattern=r"^$|^https?://[^\s]+$")
    #: sha256 of a local judge's weights (``govern version digest``), pinned in every run it grades.
    judge_weights_digest: str = Field(default="", pattern=r"^$|^[0-9a-f]{64}$")
    #: What model endpoints may reach beyond public addresses (no server-side request forgery, see
    #: ``governance.endpoints``): networks in CIDR form, host names, and ports (empty: any port).
    endpoint_allow_networks: Annotated[tuple[str, ...], NoDecode] = ()
    endpoint_allow_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    endpoint_allow_ports: Annotated[tuple[int, ...], NoDecode] = ()
    #: Folders a submitted local model path may lie in (the GPU hosts' model store); empty: none.
    model_roots: Annotated[tuple[str, ...], NoDecode] = ()
    #: vLLM engine options for gate audits of local model paths.
    vllm_tensor_parallel_size: int = Field(default=1, ge=1, le=64)
    vllm_pipeline_parallel_size: int = Field(default=1, ge=1, le=64)
    vllm_distributed_executor_backend: Literal["", "mp", "ray"] = ""
    vllm_gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    vllm_max_model_len: int = Field(default=0, ge=0, le=10_000_000)
    #: Signing key: a PKCS#12 file (default: the instance's own, created by ``govern keys init``).
    signing_pkcs12: str = ""
    signing_passphrase: SecretStr = SecretStr("")
    trust_roots: Annotated[tuple[str, ...], NoDecode] = ()
    tsa_url: str = Field(default="", pattern=r"^$|^https?://")
    #: Signed checkpoints of the event log's head (:mod:`governance.anchor`) are appended to
    #: ``<instance>/anchors/log-checkpoints.jsonl`` and to each of these files as well. Put one outside this machine's
    #: reach: a file on a write-once (WORM) mount or a remote file system, or a file a syslog/journal forwarder ships
    #: off the host. ``govern log verify`` checks the log against every checkpoint in every one of them.
    log_anchor_paths: Annotated[tuple[str, ...], NoDecode] = ()
    #: Seconds between monitoring passes of ``govern scheduler run`` and Celery beat.
    scheduler_interval: int = Field(default=300, ge=10, le=86400)
    smtp_host: str = ""
    smtp_port: Port = 25
    smtp_sender: str = Field(default="irb@localhost", pattern=r"^[^@\s]+@[^@\s]+$")
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_starttls: bool = False
    #: Base URL used in e-mails and by API clients.
    server_name_url: str = Field(default="http://127.0.0.1:5000", pattern=r"^https?://[^\s]+$")
    #: Send the session cookie only over HTTPS (set it behind TLS; see the README's deployment notes).
    session_cookie_secure: bool = False
    #: A web session ends after this many minutes without a request (21 CFR 11.200 / ASVS 3.3.2: automatic logoff).
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    #: ... and this many hours after sign-in, however active (ASVS 3.3.1).
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 7)
    default_locale: Literal["en", "zh_CN"] = "en"
    #: The largest request body the app reads (pages and API; Flask's ``MAX_CONTENT_LENGTH``): larger ones get 413.
    max_request_bytes: int = Field(default=1024 * 1024, ge=16 * 1024, le=256 * 1024 * 1024)
    #: The largest document (evidence attached to a case or deployment) accepted; its upload form alone may send
    #: a body this large (plus the form's other fields), every other request keeps ``max_request_bytes``.
    document_max_bytes: int = Field(default=25 * 1024 * 1024, ge=1024, le=1024 * 1024 * 1024)
    #: Where document bytes are kept: ``instance`` (``<instance>/documents/``) or ``s3`` (an S3-compatible object
    #: store: the endpoint URL, e.g. MinIO's, the bucket and region, and its keys; the secret from the environment
    #: as GOVERNANCE_DOCUMENT_S3_SECRET_ACCESS_KEY or from the instance config).
    document_storage: Literal["instance", "s3"] = "instance"
    document_s3_endpoint_url: str = Field(default="", pattern=r"^$|^https?://[^\s]+$")
    document_s3_bucket: str = Field(default="", pattern=r"^$|^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    document_s3_region: str = Field(default="us-east-1", pattern=r"^[a-z0-9-]{1,40}$")
    document_s3_access_key_id: str = Field(default="", max_length=200)
    document_s3_secret_access_key: SecretStr = SecretStr("")
    #: The deepest nesting of arrays and objects a JSON body may have: deeper ones get 400.
    max_json_depth: int = Field(default=32, ge=4, le=512)
    #: Failed sign-ins allowed per account and source address in ``login_lockout_minutes``; the next attempt from
    #: that address for that account is answered 429 until the window passes. Other addresses are not affected,
    #: so nobody can lock another person out.
    login_max_failures: int = Field(default=5, ge=1, le=100)
    login_lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    #: Failed sign-ins allowed per source address (any accounts) in the same window: slows password spraying.
    login_max_failures_per_address: int = Field(default=30, ge=1, le=10_000)
    #: Failed electronic-signature passwords after which signing is locked for the rest of the session.
    signature_max_failures: int = Field(default=3, ge=1, le=20)
    #: Reverse proxies in front of the app that set X-Forwarded-For/-Proto (0: none; the peer address is the
    #: client's). Throttling per address needs the client's real address.
    proxy_hops: int = Field(default=0, ge=0, le=5)
    #: How people sign in (see ``docs/sign-in.md``). The sign-in form checks a password with ``local`` (the
    #: account's own argon2 hash) and ``ldap`` (the directory), in the order named: ``("ldap", "local")`` tries the
    #: directory first and keeps local break-glass accounts working when it is down. ``oidc`` adds a "Sign in with
    #: <oidc_display_name>" button (OpenID Connect single sign-on at the hospital's identity provider).
    auth_methods: Annotated[tuple[Literal["local", "ldap", "oidc"], ...], NoDecode] = ("local",)
    #: The directory server: ``ldap://host:389`` or ``ldaps://host:636``.
    ldap_url: str = Field(default="", pattern=r"^$|^ldaps?://[^\s/]+/?$")
    #: Upgrade an ``ldap://`` connection with StartTLS (the certificate is checked, against ``ldap_ca_file`` if set).
    ldap_start_tls: bool = False
    ldap_ca_file: str = ""
    #: Seconds to connect to, and to wait for an answer from, the directory.
    ldap_timeout: float = Field(default=5.0, gt=0, le=120)
    #: The service account that looks people up (its password from the environment or the instance config).
    ldap_bind_dn: str = Field(default="", max_length=1000)
    ldap_bind_password: SecretStr = SecretStr("")
    #: Where people are searched (subtree), and how: ``{email}`` is replaced by the escaped e-mail typed in.
    ldap_user_base: str = Field(default="", max_length=1000)
    ldap_user_filter: str = Field(default="(&(objectClass=inetOrgPerson)(mail={email}))", max_length=1000,
                                  pattern=r"^\(.*\{email\}.*\)$")
    #: Where groups are searched (subtree), and the group attribute that lists member DNs.
    ldap_group_base: str = Field(default="", max_length=1000)
    ldap_group_member_attribute: str = Field(default="member", pattern=r"^[A-Za-z][A-Za-z0-9-]*$")
    #: Directory group (its DN, or its cn) -> the roles it grants, e.g. ``{ "irb-chairs" = ["irb_chair"] }``.
    #: A person in none of these groups cannot sign in through the directory.
    ldap_group_roles: dict[str, tuple[str, ...]] = {}
    #: For tests and development on one machine: admit an ``http://`` issuer on localhost / 127.0.0.1 / ::1.
    oidc_allow_http_loopback: bool = False
    #: The OpenID provider the institution configured (its discovery document is read from
    #: ``<issuer>/.well-known/openid-configuration``): ``https://`` only, unless ``oidc_allow_http_loopback``.
    oidc_issuer: str = Field(default="", pattern=r"^$|^https?://[^\s?#]+$")
    #: This app's registration at the provider (the secret from the environment or the instance config).
    oidc_client_id: str = Field(default="", max_length=500)
    oidc_client_secret: SecretStr = SecretStr("")
    #: Scopes asked for; ``openid`` is required, ``email`` gives the e-mail the account is created with.
    oidc_scopes: Annotated[tuple[str, ...], NoDecode] = ("openid", "email", "profile")
    #: The ID token claim that lists the person's groups or roles (a dotted path reaches into an object, e.g.
    #: ``realm_access.roles``), and its values (case ignored) -> the roles they grant, like ``ldap_group_roles``.
    #: A person with no mapped value cannot sign in through the provider.
    oidc_roles_claim: str = Field(default="groups", pattern=r"^[A-Za-z0-9_:/-]+(\.[A-Za-z0-9_:/-]+)*$")
    oidc_role_map: dict[str, tuple[str, ...]] = {}
    #: The button's words: "Sign in with <oidc_display_name>" (e.g. the hospital's identity platform).
    oidc_display_name: str = Field(default="the hospital account", min_length=1, max_length=100)
    #: Seconds to wait for an answer from the provider (discovery, keys, token).
    oidc_timeout: float = Field(default=10.0, gt=0, le=120)

    @field_validator("trust_roots", "endpoint_allow_networks", "endpoint_allow_hosts", "endpoint_allow_ports",
                     "model_roots", "log_anchor_paths", "auth_methods", "oidc_scopes", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("endpoint_allow_networks", mode="after")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import ipaddress

        for network in value:
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise ValueError(f"'{network}' is not a network in CIDR form (e.g. 10.20.0.0/16)") from None
        return value

    @field_validator("auth_methods", mode="after")
    @classmethod
    def _auth_methods(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one sign-in method (local, ldap, oidc)")
        if len(set(value)) != len(value):
            raise ValueError("a sign-in method is named twice")
        return value

    @field_validator("ldap_group_roles", "oidc_role_map", mode="before")
    @classmethod
    def _one_role(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {group: (roles,) if isinstance(roles, str) else roles for group, roles in value.items()}
        return value

    @field_validator("ldap_group_roles", "oidc_role_map", mode="after")
    @classmethod
    def _mapped_roles(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        """Names only: config may not import the roles (``domain``); :func:`governance.operations.directory.
        check_settings` checks them against :class:`governance.domain.Role` when the web app starts."""
        for group, roles in value.items():
            if not group.strip():
                raise ValueError("a group is named by an empty string")
            if not roles:
                raise ValueError(f"group '{group}' maps to no role")
            for role in roles:
                if not role.replace("_", "").isalpha() or role != role.lower():
                    raise ValueError(f"group '{group}' maps to '{role}', which is not a role name")
        return value

    @field_validator("ldap_group_roles", mode="after")
    @classmethod
    def _ldap_complete(cls, value: dict[str, tuple[str, ...]], info: ValidationInfo) -> dict[str, tuple[str, ...]]:
        """With ``ldap`` among the sign-in methods, the directory settings it needs (checked on the last of them,
        so that an error message never quotes the whole input, secrets included)."""
        if "ldap" in (info.data.get("auth_methods") or ()):
            missing = [name for name in ("ldap_url", "ldap_user_base", "ldap_group_base") if not info.data.get(name)]
            if missing:
                raise ValueError(f"auth_methods names ldap but {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} empty")
            if not value:
                raise ValueError("auth_methods names ldap but ldap_group_roles maps no group to a role")
        return value

    @field_validator("document_s3_secret_access_key", mode="after")
    @classmethod
    def _object_store_complete(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        """With documents in an object store, its bucket (checked on the last of its settings)."""
        if info.data.get("document_storage") == "s3" and not info.data.get("document_s3_bucket"):
            raise ValueError("document_storage is s3 but document_s3_bucket is empty")
        return value

    @field_validator("oidc_issuer", mode="after")
    @classmethod
    def _issuer(cls, value: str, info: ValidationInfo) -> str:
        """An https address; http only on this machine, and only with ``oidc_allow_http_loopback`` (the flag is
        declared before the issuer, so it is known here)."""
        if value and not value.startswith("https://"):
            if not (info.data.get("oidc_allow_http_loopback") and is_loopback_url(value)):
                raise ValueError("the issuer must be an https:// address (http:// is admitted only for localhost, "
                                 "with oidc_allow_http_loopback, for tests and development)")
        return value

    @field_validator("oidc_scopes", mode="after")
    @classmethod
    def _openid_scope(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if "openid" not in value:
            raise ValueError("the scopes must include openid")
        for scope in value:
            if not scope or any(ch.isspace() or ch in '"\\' for ch in scope):
                raise ValueError(f"'{scope}' is not a scope")
        return value

    @field_validator("oidc_role_map", mode="after")
    @classmethod
    def _oidc_complete(cls, value: dict[str, tuple[str, ...]], info: ValidationInfo) -> dict[str, tuple[str, ...]]:
        """With ``oidc`` among the sign-in methods, the provider settings it needs (the secret may be empty: a
        public client with PKCE)."""
        if "oidc" in (info.data.get("auth_methods") or ()):
            missing = [name for name in ("oidc_issuer", "oidc_client_id") if not info.data.get(name)]
            if missing:
                raise ValueError(f"auth_methods names oidc but {', '.join(missing)} "
                                 f"{'is' if len(missing) == 1 else 'are'} empty")
            if not value:
                raise ValueError("auth_methods names oidc but oidc_role_map maps no claim value to a role")
        return value

    @field_validator("instance_path", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        """Only what :func:`load_settings` passes: it reads the file and the environment itself, to name the
        source of a bad value."""
        return (init_settings,)

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.instance_path / 'governance.sqlite3'}"

    @property
    def secret_is_insecure(self) -> bool:
        secret = self.secret_key.get_secret_value()
        return secret.strip().lower() in KNOWN_INSECURE_SECRETS or len(secret) < 16

    def require_secure_secret(self) -> None:
        """Refuse to serve real users with a guessable session key."""
        if self.secret_is_insecure and not (self.debug or self.demo_mode):
            raise ConfigError(
                "secret_key is missing or a known default: run `govern init` (it writes a random key to "
                f"{self.instance_path / CONFIG_FILE_NAME}) or set GOVERNANCE_SECRET_KEY"
            )

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with ``changes`` (settings are frozen)."""
        try:
            return type(self).model_validate({**dict(self), **changes})
        except ValidationError as exc:
            raise _config_error(exc, {key: "replace()" for key in changes}) from None


def is_loopback_url(url: str) -> bool:
    """Whether ``url``'s host is this machine (``localhost``, 127.0.0.0/8 or ::1)."""
    import ipaddress
    from urllib.parse import urlsplit

    try:
        host = (urlsplit(url).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


SETTING_NAMES = frozenset(name for name in Settings.model_fields if name != "instance_path")


def resolve_instance_path(explicit: str | os.PathLike | None = None) -> Path:
    raw = explicit or os.environ.get(f"{ENV_PREFIX}INSTANCE") or "instance"
    return Path(raw).expanduser().resolve()


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (tests pass their own)."""

    def __init__(self, environ: Mapping[str, str]):
        self._given = environ
        super().__init__(Settings, case_sensitive=False, env_prefix=ENV_PREFIX)

    def _load_env_vars(self):
        return {key.lower(): value for key, value in self._given.items()}


def _environment_values(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    origin: dict[str, str] = {}
    for env_key in environ:
        if not env_key.startswith(ENV_PREFIX):
            continue
        name = env_key[len(ENV_PREFIX):]
        if name in NOT_SETTINGS or name.startswith(NOT_SETTINGS_PREFIXES):
            continue
        if name.lower() not in SETTING_NAMES:
            raise ConfigError(f"environment: unknown setting {env_key}")
        origin[name.lower()] = f"environment {env_key}"
    try:
        values = _Environment(environ)()
    except Exception as exc:  # pydantic-settings cannot parse a complex value
        raise ConfigError(f"environment: {exc}") from None
    return {key: value for key, value in values.items() if key in origin}, origin


def _file_values(config_file: Path) -> tuple[dict[str, Any], dict[str, str]]:
    if not config_file.exists():
        return {}, {}
    try:
        values = TomlConfigSettingsSource(Settings, toml_file=config_file)()
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_file}: {exc}") from None
    for key in values:
        if key not in SETTING_NAMES:
            raise ConfigError(f"{config_file}: unknown setting '{key}'")
    return values, {key: str(config_file) for key in values}


def _config_error(exc: ValidationError, origin: Mapping[str, str]) -> ConfigError:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error["loc"] else "?"
    message = error["msg"].removeprefix("Value error, ")
    return ConfigError(f"{origin.get(key, 'defaults')}: setting '{key}': {message} (got {error.get('input')!r})")


def load_settings(instance_path: Path, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from defaults, the instance ``config.toml``, the environment and ``overrides``."""
    values, origin = _file_values(instance_path / CONFIG_FILE_NAME)
    from_env, env_origin = _environment_values(os.environ if environ is None else environ)
    values.update(from_env)
    origin.update(env_origin)
    for key, value in (overrides or {}).items():
        if key not in SETTING_NAMES:
            raise ConfigError(f"test_config: unknown setting '{key}'")
        values[key] = value
        origin[key] = "test_config"
    try:
        return Settings(instance_path=instance_path, **values)
    except ValidationError as exc:
        raise _config_error(exc, origin) from None


def write_instance_config(instance_path: Path, updates: dict[str, Any]) -> Path:
    """Merge ``updates`` into the instance ``config.toml`` (flat keys only), keeping other keys."""
    config_file = instance_path / CONFIG_FILE_NAME
    current: dict[str, Any] = {}
    if config_file.exists():
        current = tomllib.loads(config_file.read_text(encoding="utf-8"))
    current.update(updates)
    lines = ["# Settings of this instance. Environment variables GOVERNANCE_<NAME> override them."]
    for key in sorted(current):
        if key not in SETTING_NAMES:
            raise ConfigError(f"{config_file}: unknown setting '{key}'")
        lines.append(f"{key} = {_toml_value(current[key])}")
    config_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    config_file.chmod(0o600)
    return config_file


def _toml_value(value: Any) -> str:
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_value(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def new_secret_key() -> str:
    return secrets.token_urlsafe(48)


def as_public_dict(settings: Settings) -> dict[str, Any]:
    """Settings without secrets, for ``govern config show`` and the admin page."""
    out = {}
    for key, value in dict(settings).items():
        if isinstance(value, SecretStr):
            out[key] = "(set)" if value.get_secret_value() else "(empty)"
        else:
            out[key] = str(value) if isinstance(value, Path) else value
    return out
