"""JWTs for every party, via python-jose: algorithm pinned, iss/aud/exp checked."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, Request
from jose import jwt
from jose.exceptions import JOSEError

from odr_shared.problems import Problem
from odr_shared.settings import ServiceSettings

Role = Literal["consumer", "platform", "mediator", "arbitrator", "admin", "service"]
# `service`: one of the platform's own services calling another (subject keys, exports).
ROLES: tuple[Role, ...] = ("consumer", "platform", "mediator", "arbitrator", "admin", "service")
SERVICES = ("gateway", "complaints", "mediation", "notifications")


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class Party:
    """Who is calling, and what their token lets them reach."""

    role: Role
    subject: str
    platform_id: str | None = None  # platform tokens; consumer tokens carry their order's platform
    order_id: str | None = None  # consumer tokens: the one order this token covers
    neutral_id: str | None = None  # mediator/arbitrator tokens
    roles: tuple[str, ...] = ()  # a neutral may be both mediator and arbitrator
    token_id: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def has_role(self, *roles: str) -> bool:
        return self.role in roles or any(r in roles for r in self.roles)


class TokenService:
    def __init__(self, settings: ServiceSettings) -> None:
        self.algorithm = settings.jwt_algorithm
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        if self.algorithm == "HS256":
            self._sign_key = settings.jwt_secret
            self._verify_key = settings.jwt_secret
        else:
            self._sign_key = settings.jwt_private_key
            self._verify_key = settings.jwt_public_key

    def issue(
        self,
        *,
        role: Role,
        subject: str,
        ttl: timedelta,
        platform_id: str | None = None,
        order_id: str | None = None,
        neutral_id: str | None = None,
        roles: tuple[str, ...] = (),
    ) -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role}")
        if not self._sign_key:
            raise InvalidToken("this service holds no signing key")
        now = datetime.now(UTC)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int((now + ttl).timestamp()),
            "jti": uuid.uuid4().hex,
            "role": role,
        }
        if platform_id:
            claims["platform_id"] = platform_id
        if order_id:
            claims["order_id"] = order_id
        if neutral_id:
            claims["neutral_id"] = neutral_id
        if roles:
            claims["roles"] = list(roles)
        return str(jwt.encode(claims, self._sign_key, algorithm=self.algorithm))

    def verify(self, token: str) -> Party:
        try:
            header = jwt.get_unverified_header(token)
        except JOSEError as exc:
            raise InvalidToken("malformed token") from exc
        # Pin the algorithm before anything else: no `none`, no HS/RS confusion.
        if header.get("alg") != self.algorithm:
            raise InvalidToken("unexpected token algorithm")
        try:
            claims = jwt.decode(
                token,
                self._verify_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                options={"require_exp": True, "require_iat": True, "require_sub": True},
            )
        except JOSEError as exc:
            raise InvalidToken(str(exc)) from exc
        role = claims.get("role")
        if role not in ROLES:
            raise InvalidToken("token carries no known role")
        if role == "consumer" and not claims.get("order_id"):
            raise InvalidToken("consumer token without an order")
        if role == "platform" and not claims.get("platform_id"):
            raise InvalidToken("platform token without a platform")
        if role in ("mediator", "arbitrator") and not claims.get("neutral_id"):
            raise InvalidToken("neutral token without a neutral")
        if role == "service" and str(claims["sub"]) not in SERVICES:
            raise InvalidToken("service token of no known service")
        return Party(
            role=role,
            subject=str(claims["sub"]),
            platform_id=claims.get("platform_id"),
            order_id=claims.get("order_id"),
            neutral_id=claims.get("neutral_id"),
            roles=tuple(claims.get("roles") or ()),
            token_id=claims.get("jti"),
        )


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="odr"'})


def current_party(request: Request) -> Party:
    """FastAPI dependency: the verified caller, or 401."""
    token = _bearer(request)
    if token is None:
        raise _unauthorized("a bearer token is required")
    tokens: TokenService = request.app.state.tokens
    try:
        return tokens.verify(token)
    except InvalidToken as exc:
        raise _unauthorized(f"invalid token: {exc}") from exc


def optional_party(request: Request) -> Party | None:
    if _bearer(request) is None:
        return None
    return current_party(request)


CurrentParty = Annotated[Party, Depends(current_party)]
OptionalParty = Annotated[Party | None, Depends(optional_party)]


def require_role(party: Party, *roles: str) -> None:
    if not party.has_role(*roles):
        raise Problem(403, "Forbidden", f"this action needs the role {' or '.join(roles)}")


def admin_party(request: Request) -> Party:
    party = current_party(request)
    require_role(party, "admin")
    return party


AdminParty = Annotated[Party, Depends(admin_party)]


def service_party(request: Request) -> Party:
    """FastAPI dependency: another of the platform's services, or 401/403."""
    party = current_party(request)
    require_role(party, "service")
    return party


ServiceParty = Annotated[Party, Depends(service_party)]


class ServiceTokens:
    """This service's token for calling another: minted when needed, kept until near expiry."""

    TTL = timedelta(minutes=10)

    def __init__(self, settings: ServiceSettings, service: str) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service}")
        self._tokens = TokenService(settings)
        self._service = service
        self._token = ""
        self._renew_at = 0.0

    def token(self) -> str:
        now = time.monotonic()
        if not self._token or now >= self._renew_at:
            self._token = self._tokens.issue(role="service", subject=self._service, ttl=self.TTL)
            self._renew_at = now + self.TTL.total_seconds() - 60
        return self._token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}", "Accept": "application/json"}
