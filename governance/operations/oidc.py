"""The OpenID Connect client of sign-in (``auth_methods`` naming ``oidc``; see ``docs/sign-in.md``).

One sign-in is the authorization-code flow with PKCE (S256), ``state`` and ``nonce``: :func:`begin` reads the
provider's discovery document from ``oidc_issuer`` and returns the address to send the browser to, with what the
browser's session must keep; :func:`finish` checks the ``state`` the provider sent back, redeems the code (with the
PKCE verifier and the client secret) and validates the ID token: its signature against the provider's published
keys (asymmetric algorithms only), ``iss``, ``aud``, ``exp``/``iat`` and ``nonce``. :func:`roles_for` turns the
``oidc_roles_claim`` values into roles through ``oidc_role_map``. Accounts and role changes are written by
:mod:`governance.operations.users`.

The issuer is the institution's setting, never a person's input; every address its discovery document names must
be ``https://`` too (``http://`` on this machine only with ``oidc_allow_http_loopback``), and redirects are not
followed. Authlib and requests are imported only here and only when a sign-in asks, so processes that never sign
anyone in this way (``govern --help``, workers) do not load them.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, Settings, is_loopback_url
from ..domain import Role
from ..errors import GovernanceError

log = logging.getLogger(__name__)

#: How long a started sign-in may take at the provider before its answer is refused.
PENDING_SECONDS = 600
#: Clock difference tolerated between this server and the provider (``exp``, ``iat``).
LEEWAY_SECONDS = 60
#: ID token signatures accepted: public-key algorithms only (never ``none``, never a MAC keyed by the client secret).
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class ProviderUnavailable(GovernanceError):
    """The provider could not be asked (unreachable, timed out, an error page, an unusable discovery document):
    never the person's fault."""


class AnswerRefused(GovernanceError):
    """The provider's answer cannot sign anybody in (``reason`` says why, for the event and the log): the person
    cancelled, the state or nonce does not match, the code was refused, or the ID token is not valid."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Provider:
    """What the discovery document says (only what sign-in uses)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class Identity:
    """The person the provider vouched for in a valid ID token."""

    issuer: str
    subject: str
    email: str
    #: ``email_verified`` as the provider said it (None: not said).
    email_verified: bool | None
    name: str
    #: The values of ``oidc_roles_claim`` (as strings).
    values: tuple[str, ...]


def check_settings(settings: Settings) -> None:
    """Stop the app at start when ``oidc_role_map`` maps a value to a role that does not exist."""
    known = {role.value for role in Role}
    for value, roles in settings.oidc_role_map.items():
        unknown = sorted(set(roles) - known)
        if unknown:
            raise ConfigError(f"setting 'oidc_role_map': '{value}' maps to unknown role(s) "
                              f"{', '.join(unknown)}; roles are {', '.join(sorted(known))}")


def roles_for(settings: Settings, values: tuple[str, ...] | list[str]) -> set[str]:
    """The roles ``oidc_role_map`` grants for the claim's values (case ignored)."""
    have = {value.strip().lower() for value in values}
    roles: set[str] = set()
    for key, granted in settings.oidc_role_map.items():
        if key.strip().lower() in have:
            roles.update(granted)
    return roles


def claim_values(claims: Mapping[str, Any], path: str) -> tuple[str, ...]:
    """The values at ``path`` (dotted: ``realm_access.roles``): a list of strings, or one string."""
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(item) for item in value if isinstance(item, (str, int)))
    return ()


def _allowed(settings: Settings, url: Any) -> bool:
    return isinstance(url, str) and (url.startswith("https://") or (
        settings.oidc_allow_http_loopback and url.startswith("http://") and is_loopback_url(url)))


def _session(settings: Settings, redirect_uri: str = ""):
    from authlib.integrations.requests_client import OAuth2Session

    return OAuth2Session(settings.oidc_client_id, settings.oidc_client_secret.get_secret_value() or None,
                         token_endpoint_auth_method="client_secret_basic" if settings.oidc_client_secret
                         .get_secret_value() else "none",
                         scope=" ".join(settings.oidc_scopes), redirect_uri=redirect_uri or None,
                         code_challenge_method="S256", default_timeout=settings.oidc_timeout)


def _get_json(client, settings: Settings, url: str, what: str) -> dict[str, Any]:
    import requests

    try:
        response = client.get(url, withhold_token=True, allow_redirects=False, timeout=settings.oidc_timeout)
    except requests.RequestException as exc:
        raise ProviderUnavailable(f"the {what} {url} cannot be reached: {type(exc).__name__}: {exc}") from None
    if response.status_code != 200:
        raise ProviderUnavailable(f"the {what} {url} answered HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"the {what} {url} is not a JSON object")
    return document


def discover(settings: Settings, client=None) -> Provider:
    """Read and check ``<oidc_issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery 1.0)."""
    client = client or _session(settings)
    url = settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
    metadata = _get_json(client, settings, url, "discovery document")
    issuer = metadata.get("issuer")
    if not isinstance(issuer, str) or issuer.rstrip("/") != settings.oidc_issuer.rstrip("/"):
        raise ProviderUnavailable(f"the discovery document {url} names the issuer {issuer!r}, not the configured "
                                  f"{settings.oidc_issuer!r}")
    endpoints = {}
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        if not _allowed(settings, metadata.get(key)):
            raise ProviderUnavailable(f"the discovery document {url} gives {key} {metadata.get(key)!r}: it must be "
                                      "an https:// address")
        endpoints[key] = metadata[key]
    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = tuple(alg for alg in ALGORITHMS if alg in offered)
    if not algorithms:
        raise ProviderUnavailable(f"the provider signs ID tokens only with {offered}; accepted are "
                                  f"{', '.join(ALGORITHMS)}")
    return Provider(issuer=issuer, algorithms=algorithms, **endpoints)


def begin(settings: Settings, redirect_uri: str) -> tuple[str, dict[str, Any]]:
    """The provider's address to send the browser to, and what the browser's session keeps until the answer
    (the state, the nonce and the PKCE verifier: random, never sent anywhere else).

    Raises :class:`ProviderUnavailable` (after logging why) when the discovery document cannot be read."""
    from authlib.common.security import generate_token

    client = _session(settings, redirect_uri)
    try:
        provider = discover(settings, client)
        pending = {"state": generate_token(43), "nonce": generate_token(43), "verifier": generate_token(64),
                   "redirect_uri": redirect_uri, "issuer": provider.issuer, "at": int(time.time())}
        url, _state = client.create_authorization_url(provider.authorization_endpoint, state=pending["state"],
                                                      code_verifier=pending["verifier"], nonce=pending["nonce"])
    except ProviderUnavailable as exc:
        log.error("sign-in through the OpenID provider is unavailable: %s", exc)
        raise
    finally:
        client.close()
    return url, pending


def finish(settings: Settings, pending: Mapping[str, Any] | None, answer: Mapping[str, str], *,
           now: float | None = None) -> Identity:
    """The person in the provider's ``answer`` (the callback's query) to the sign-in ``pending`` describes.

    Raises :class:`AnswerRefused` when the answer cannot sign anybody in, :class:`ProviderUnavailable` when the
    provider cannot be asked (both logged with the cause)."""
    try:
        return _finish(settings, pending, answer, time.time() if now is None else now)
    except AnswerRefused as exc:
        log.warning("sign-in through the OpenID provider refused: %s", exc.reason)
        raise
    except ProviderUnavailable as exc:
        log.error("sign-in through the OpenID provider is unavailable: %s", exc)
        raise


def _finish(settings: Settings, pending: Mapping[str, Any] | None, answer: Mapping[str, str],
            now: float) -> Identity:
    import requests
    from authlib.integrations.base_client import OAuthError
    from joserfc.jwk import KeySet

    if not pending or not all(isinstance(pending.get(key), str) for key in ("state", "nonce", "verifier",
                                                                             "redirect_uri", "issuer")):
        raise AnswerRefused("no sign-in was started in this browser session")
    if not hmac.compare_digest(str(answer.get("state", "")).encode(), pending["state"].encode()):
        raise AnswerRefused("the state does not match the sign-in started in this browser session")
    if answer.get("error"):
        raise AnswerRefused(f"the provider answered {str(answer['error'])[:100]}: "
                            f"{str(answer.get('error_description', ''))[:300]}")
    if not isinstance(pending.get("at"), int) or now - pending["at"] > PENDING_SECONDS:
        raise AnswerRefused(f"the answer came more than {PENDING_SECONDS} seconds after the sign-in started")
    if pending["issuer"].rstrip("/") != settings.oidc_issuer.rstrip("/"):
        raise AnswerRefused("the sign-in was started with another provider")
    code = answer.get("code")
    if not code:
        raise AnswerRefused("the provider's answer has no code")

    client = _session(settings, pending["redirect_uri"])
    try:
        provider = discover(settings, client)
        try:
            token = client.fetch_token(provider.token_endpoint, grant_type="authorization_code", code=code,
                                       code_verifier=pending["verifier"], allow_redirects=False)
        except OAuthError as exc:
            raise AnswerRefused(f"the provider refused the code: {exc.error} {exc.description or ''}".strip()) \
                from None
        except requests.RequestException as exc:
            raise ProviderUnavailable(f"the token endpoint {provider.token_endpoint} cannot be reached: "
                                      f"{type(exc).__name__}: {exc}") from None
        except ValueError as exc:  # not JSON: an error page
            raise ProviderUnavailable(f"the token endpoint {provider.token_endpoint} answered no token: {exc}") \
                from None
        if not token.get("id_token"):
            raise AnswerRefused("the provider's token response has no ID token")
        keys = KeySet.import_key_set(_get_json(client, settings, provider.jwks_uri, "key set"))
    finally:
        client.close()
    return validate_id_token(settings, provider, keys, token["id_token"], nonce=pending["nonce"],
                             access_token=token.get("access_token"), now=now)


def validate_id_token(settings: Settings, provider: Provider, keys, id_token: str, *, nonce: str,
                      access_token: str | None, now: float) -> Identity:
    """The person in ``id_token`` if its signature verifies with one of the provider's ``keys`` (an algorithm the
    provider offers and :data:`ALGORITHMS` admits) and its claims are this sign-in's: ``iss`` the provider,
    ``aud`` this client, not expired, ``nonce`` the one sent (OpenID Connect Core 3.1.3.7)."""
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jws import JWSRegistry

    try:
        decoded = jwt.decode(id_token, keys, algorithms=list(provider.algorithms),
                             registry=JWSRegistry(algorithms=list(provider.algorithms)))
        claims = CodeIDToken(decoded.claims, decoded.header,
                             {"iss": {"essential": True, "value": provider.issuer},
                              "aud": {"essential": True, "value": settings.oidc_client_id}},
                             {"nonce": nonce, "client_id": settings.oidc_client_id, "access_token": access_token})
        claims.validate(now=int(now), leeway=LEEWAY_SECONDS)
    except (JoseError, ValueError) as exc:
        raise AnswerRefused(f"the ID token is not valid: {type(exc).__name__}: {exc}") from None
    verified = claims.get("email_verified")
    return Identity(issuer=provider.issuer, subject=str(claims["sub"]), email=str(claims.get("email") or ""),
                    email_verified=verified if isinstance(verified, bool) else None,
                    name=str(claims.get("name") or ""), values=claim_values(claims, settings.oidc_roles_claim))
