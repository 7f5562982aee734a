"""Which uid a container will run as, resolved the way runc resolves it (pure).

runc reads the user spec ``user[:group]`` against the container's ``/etc/passwd`` and
``/etc/group`` (the image's: the proxy allows no mounts). A spec that Go's ``strconv.Atoi``
parses is a *number* -- and Atoi accepts a sign, so ``"+0"``, ``"-0"`` and ``"00"`` are all
uid 0. Anything else is a *name* looked up in passwd (first match). An empty spec means
the image's default user; an image without one runs as root.

:func:`resolve_uid` accepts only: strict ASCII digits for a number (no sign), a portable
name that passwd maps to a uid, a non-zero uid, no explicit root group, and a user that
``/etc/group`` does not list as a member of group 0. Everything else raises ``Refused``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

MAX_ID = 2**31 - 2          # runc refuses ids above 2^31 - 1
_GO_INT = re.compile(r"[+-]?[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?")


class Refused(Exception):
    """The reason a create body is refused."""


@dataclass(frozen=True)
class ImageUsers:
    """What an image says about users: its default ``User`` and its passwd/group files."""

    default_user: str = ""
    users: Mapping[str, tuple[int, int]] = field(default_factory=dict)    # name -> (uid, gid), first wins
    by_uid: Mapping[int, tuple[str, int]] = field(default_factory=dict)   # uid -> (name, gid), first wins
    groups: Mapping[str, int] = field(default_factory=dict)               # name -> gid, first wins
    members: Mapping[int, frozenset[str]] = field(default_factory=dict)   # gid -> member names

    @classmethod
    def parse(cls, default_user: str, passwd: str, group: str) -> ImageUsers:
        users: dict[str, tuple[int, int]] = {}
        by_uid: dict[int, tuple[str, int]] = {}
        for name, uid, gid in _rows(passwd, 4):
            users.setdefault(name, (uid, gid))
            by_uid.setdefault(uid, (name, gid))
        groups: dict[str, int] = {}
        members: dict[int, set[str]] = {}
        for line in group.splitlines():
            parts = line.split(":")
            if len(parts) < 4 or not _DIGITS.fullmatch(parts[2]) or len(parts[2]) > 10:
                continue
            gid = int(parts[2])
            groups.setdefault(parts[0], gid)
            members.setdefault(gid, set()).update(m for m in parts[3].split(",") if m)
        return cls(default_user or "", users, by_uid, groups,
                   {g: frozenset(m) for g, m in members.items()})


def _rows(passwd: str, width: int):
    for line in passwd.splitlines():
        parts = line.split(":")
        if len(parts) < width or line.startswith("#"):
            continue
        if all(_DIGITS.fullmatch(x) and len(x) <= 10 for x in parts[2:4]):
            yield parts[0], int(parts[2]), int(parts[3])


def _number(text: str, what: str) -> int | None:
    """The id ``text`` stands for if runc would read it as a number; None for a name."""
    if _DIGITS.fullmatch(text):
        if len(text) > 10 or int(text) > MAX_ID:
            raise Refused(f"{what} {text[:20]!r} is out of range")
        return int(text)
    if _GO_INT.fullmatch(text):
        raise Refused(f"{what} {text!r}: only plain digits (runc reads a signed number)")
    if not _NAME.fullmatch(text):
        raise Refused(f"{what} {text!r} is not a number or a plain name")
    return None


def resolve_uid(spec: str | None, image: ImageUsers) -> int:
    """The non-zero uid the container will run as, or raise :class:`Refused`."""
    if spec is not None and not isinstance(spec, str):
        raise Refused("User must be a string")
    spec = spec or image.default_user
    if not spec:
        raise Refused("the container would run as root: no User, and the image sets none")
    name, sep, group = spec.partition(":")
    uid = _number(name, "user")
    if uid is None:
        if name not in image.users:
            raise Refused(f"user {name!r} is not in the image's /etc/passwd")
        uid, gid = image.users[name]
        member = name
    else:
        member, gid = image.by_uid.get(uid, (None, 0))
    if uid == 0:
        raise Refused(f"user {spec!r} is uid 0 (root)")
    if sep:
        gid = _number(group, "group") if group else None
        if gid is None:
            if group not in image.groups:
                raise Refused(f"group {group!r} is not in the image's /etc/group")
            gid = image.groups[group]
        if gid == 0:
            raise Refused(f"user {spec!r} asks for the root group")
    if member and member in image.members.get(0, ()):
        raise Refused(f"user {member!r} is a member of the root group in the image")
    return uid
