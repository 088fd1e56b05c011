"""Errors raised by store adapters. They carry no HTTP meaning; services translate them."""


class StoreError(Exception):
    """Base class for storage failures."""


class StoreUnavailable(StoreError):
    """The backing database did not answer (network, timeout, closed store)."""


class EmailTaken(StoreError):
    """A user with this (normalised) email already exists."""
