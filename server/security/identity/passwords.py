"""Password hashing (argon2id) and the password policy."""

from __future__ import annotations

import argon2

from server.errors import InvalidInput

MIN_PASSWORD_LENGTH = 12


def check_password_policy(password: str) -> None:
    """Raise InvalidInput if ``password`` is too weak. The message never contains the password."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must have at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if password.isdigit() or password.isalpha() or len(set(password)) < 5:
        raise InvalidInput("password must mix letters with digits or symbols", field="password")


class PasswordHasher:
    """argon2id hashing with a constant-time answer for unknown users."""

    def __init__(self) -> None:
        self._hasher = argon2.PasswordHasher()
        # Verifying against this when the user does not exist keeps the timing of both answers alike.
        self._dummy_hash = self._hasher.hash("strongroom-dummy-password")

    def hash(self, password: str) -> str:
        """The argon2id hash of ``password``."""
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches; spends the same effort when ``password_hash`` is None."""
        try:
            return self._hasher.verify(password_hash or self._dummy_hash, password) and password_hash is not None
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            return False
