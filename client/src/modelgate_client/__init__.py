"""Python client for modelgate: ``Client`` / ``AsyncClient``, typed errors, and the ``modelgate`` CLI."""

from .auth import ClientCredentials, PasswordLogin, StoredRefreshToken, TokenAuth
from .client import AsyncClient, Client, RetryPolicy
from .errors import (
    AuthenticationError,
    Conflict,
    ModelgateError,
    NotFound,
    PermissionDenied,
    RateLimited,
    ServerError,
    TransportError,
    ValidationError,
)

__version__ = "0.1.0"
__all__ = [
    "AsyncClient",
    "AuthenticationError",
    "Client",
    "ClientCredentials",
    "Conflict",
    "ModelgateError",
    "NotFound",
    "PasswordLogin",
    "PermissionDenied",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "StoredRefreshToken",
    "TokenAuth",
    "TransportError",
    "ValidationError",
]
