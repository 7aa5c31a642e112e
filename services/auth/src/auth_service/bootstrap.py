"""The first admin, from MODELGATE_ADMIN_USERNAME/PASSWORD, created once at start."""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from .accounts import UserConflict, create_user, user_by_username
from .issuing import ADMIN_SCOPES
from .passwords import PasswordHasher
from .schemas import normalise_email
from .settings import AuthSettings

log = logging.getLogger(__name__)


async def ensure_admin(session: AsyncSession, hasher: PasswordHasher, settings: AuthSettings) -> bool:
    """Create the configured admin unless a user of that name exists. True when created.

    An existing account is never modified: the environment must not be able to reset
    a password or re-grant admin after someone changed them through the API.
    """
    if not settings.admin_username or settings.admin_password is None:
        return False
    # Both were validated (and the name normalised) with the settings.
    username = settings.admin_username
    password = settings.admin_password.get_secret_value()
    if await user_by_username(session, username) is not None:
        return False
    email = normalise_email(settings.admin_email or f"{username}@admin.invalid")
    try:
        await create_user(
            session, hasher, username=username, email=email, password=password, full_name=None, scopes=ADMIN_SCOPES
        )
    except UserConflict:
        # Another worker created it first, or the email is taken, or the name is reserved by
        # a rename (the admin renamed within the grace period): nothing to do.
        return False
    log.info("created the first admin user %r", username)
    return True
