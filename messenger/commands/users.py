"""``create-user`` and ``reset-password``: accounts made and repaired by an operator.

Both check their input with the registration rules (``messenger.validation``: the email is
trimmed and lower-cased, the display name and the password are held to the same limits), bring
the store's schema up to date first (as the server does at start; idempotent), and take the
password from standard input or a prompt (``password_input``), never from an argument.

* ``create-user --email E --display-name N [--password-stdin]``: creates the account (its email
  not verified, no session opened, no email sent) and prints its id alone on stdout. An email
  that already has an account: exit 1.
* ``reset-password --email E [--password-stdin]``: sets a new password through
  ``AccountService.reset_password``, which revokes every refresh-token family of the account
  (each session must log in again; access tokens already issued stay valid until they expire,
  at most ``ACCESS_TOKEN_TTL_SECONDS``). No such account: exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from config import Settings
from messenger import validation
from messenger.accounts import AccountService
from messenger.commands.base import EXIT_OK, Command, CommandError, UsageError, load_config
from messenger.commands.password_input import read_password
from messenger.errors import ValidationFailed
from messenger.passwords import PasswordHasher
from messenger.store import EmailTaken, Store, StoreError, open_store
from messenger.tokens import TokenCodec


def _checked(check: Callable[[dict[str, Any]], str], field: str, value: str) -> str:
    """``value`` as the registration rule ``check`` of ``field`` takes it; else ``UsageError``."""
    try:
        return check({field: value})
    except ValidationFailed as exc:
        raise UsageError(exc.message) from None


def checked_password(password: str) -> str:
    return _checked(validation.password, "password", password)


def account_service(settings: Settings, store: Store) -> AccountService:
    tokens = TokenCodec(settings.jwt_secret, settings.jwt_issuer, settings.jwt_audience,
                        settings.access_token_ttl, settings.refresh_token_ttl)
    return AccountService(store, tokens, PasswordHasher(settings.bcrypt_rounds))


async def create_user(settings: Settings, email: str, display_name: str, password: str) -> str:
    """The new account's id."""
    store = open_store(settings)
    try:
        await store.migrate()
        password_hash = await PasswordHasher(settings.bcrypt_rounds).hash(password)
        try:
            user = await store.create_user(email, password_hash, display_name)
        except EmailTaken:
            raise CommandError(f"an account with the email {email} already exists") from None
    finally:
        await store.close()
    return user.id


async def reset_password(settings: Settings, email: str, password: str) -> str:
    """The account's id, once its password is replaced and its refresh tokens revoked."""
    store = open_store(settings)
    try:
        await store.migrate()
        user = await store.get_user_by_email(email)
        if user is None or not await account_service(settings, store).reset_password(
                user.id, password):
            raise CommandError(f"no account has the email {email}")
    finally:
        await store.close()
    return user.id


def _store_call[T](work: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(work)
    except StoreError as exc:
        raise CommandError(f"storage error: {exc}") from None


def configure_create(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", required=True, help="the account's email address")
    parser.add_argument("--display-name", required=True, help="the name others see")
    _password_argument(parser)


def configure_reset(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--email", required=True, help="the account's email address")
    _password_argument(parser)


def _password_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--password-stdin", action="store_true",
        help="read the password from standard input (without it: ask on the terminal)")


def run_create(args: argparse.Namespace) -> int:
    email = _checked(validation.email, "email", args.email)
    display_name = _checked(validation.display_name, "display_name", args.display_name)
    settings = load_config()
    password = checked_password(read_password(from_stdin=args.password_stdin))
    print(_store_call(create_user(settings, email, display_name, password)))
    return EXIT_OK


def run_reset(args: argparse.Namespace) -> int:
    email = _checked(validation.email, "email", args.email)
    settings = load_config()
    password = checked_password(read_password(from_stdin=args.password_stdin))
    user_id = _store_call(reset_password(settings, email, password))
    print(f"password reset for user {user_id}; every session of the account is signed out")
    return EXIT_OK


CREATE_USER = Command(
    name="create-user",
    help="create an account; prints its id",
    description="Create an account with the registration rules (its email not verified) and "
    "print its id. The password comes from standard input (--password-stdin) or a prompt, "
    "never from an argument. Exit 1 when the email already has an account.",
    configure=configure_create,
    run=run_create,
)
RESET_PASSWORD = Command(
    name="reset-password",
    help="set an account's password and sign out its sessions",
    description="Set a new password for the account with this email and revoke every refresh "
    "token of the account (access tokens expire within ACCESS_TOKEN_TTL_SECONDS). The password "
    "comes from standard input (--password-stdin) or a prompt. Exit 1 when no account has the "
    "email.",
    configure=configure_reset,
    run=run_reset,
)
