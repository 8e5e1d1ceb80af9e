"""Settings read back from a file (a checkpoint, a cloak, a results.json): exactly the
fields of their dataclass, or an error saying what differs and how to re-make the file.

A file written by an earlier sercloak lacks settings added since, or holds some
that were removed: it is refused here, in one place, rather than read with
defaults that may not be what made it.
"""

from __future__ import annotations

from dataclasses import fields


def from_fields(cls, d: dict, what: str):
    """`cls(**d)` when `d` names exactly `cls`'s fields; else ValueError."""
    names = {f.name for f in fields(cls)}
    missing, unknown = sorted(names - set(d)), sorted(set(d) - names)
    if missing or unknown:
        raise ValueError(
            f"{what} settings from another version of sercloak ("
            + ", ".join(part for part in (f"missing {missing}" if missing else "",
                                          f"unknown {unknown}" if unknown else "") if part)
            + ")")  # the reader names the file and how to make it again
    return cls(**d)
