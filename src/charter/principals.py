"""Principals: one canonical spelling, so that identities can be compared.

A principal's name is canonicalised once, where it enters Charter (a run's start, an
approval's ``--as``, a role grant), and every comparison (separation of duties, role lookup)
compares canonical names: Unicode NFKC (fullwidth ``Ann`` is ``Ann``), then case-folded (``Ann`` is
``ann``), then trimmed. An empty name, or one with a control or invisible formatting character
(a newline, a bell, a zero-width space), is refused: it could not be told apart from another
on a screen.

Principals are tenant-qualified: the identity that starts a run is ``(tenant, principal)``,
a role grant names its tenant (or every tenant, ``*``), and an approval is decided within its
request's tenant. Until authentication arrives a decider's own tenant is only what they say,
so separation of duties refuses the same canonical name whatever tenant either side claims.
"""

from __future__ import annotations

import getpass
import os
import unicodedata

from charter.errors import ConfigError

__all__ = ["canonical_principal", "local_operator", "same_principal"]


def canonical_principal(name: str) -> str:
    """The canonical spelling of a principal's name, or a :class:`ConfigError` naming why not."""
    canonical = unicodedata.normalize("NFKC", name).casefold().strip()
    if not canonical:
        raise ConfigError(
            "principal is empty", hint="name who acts, e.g. --principal ann@example.com"
        )
    odd = next((c for c in canonical if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if odd is not None:
        raise ConfigError(
            f"principal {name!r} contains the control character U+{ord(odd):04X}",
            hint="a principal is printable text: letters, digits, '@', '.', '-', '_'",
        )
    return canonical


def same_principal(a: str, b: str) -> bool:
    """Whether two names, as stored or as typed, name the same principal."""
    return _loose(a) == _loose(b)


def _loose(name: str) -> str:
    """Canonical, without refusing: old rows are compared, never rejected."""
    return unicodedata.normalize("NFKC", name).casefold().strip()


def local_operator() -> str:
    """Who acts from this machine's shell when no ``--as`` is given: ``local:<login>``.

    Recorded as such in the audit log; the server's authenticated identities replace it.
    """
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry and no LOGNAME/USER (some containers)
        login = f"uid{os.getuid()}"
    return canonical_principal(f"local:{login}")
