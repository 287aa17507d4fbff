"""Identifying text in NIfTI header fields (names, dates, identifiers).

DICOM converters and hand-edited headers sometimes leave the patient's name, birth date
or record number in free-text header fields. A site whose files hold such text is not
de-identified (MIDaR level D). The checks are patterns, not proof: they are tuned to flag
DICOM person names, dates and long digit runs, and to leave common benign strings
(``"FSL5.0"``, ``"synthetic FedShift phantom"``, empty fields) alone.

A finding names the header field and the kind of text found, never the text itself, so
the report does not copy identifying data.
"""

from __future__ import annotations

import re

import numpy as np

from fedshift.findings import Finding, finding

#: free-text header fields that are checked (NIfTI-2 has no ``db_name``)
TEXT_FIELDS = ("descrip", "aux_file", "intent_name", "db_name")

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
_YEAR = r"(?:19|20)\d{2}"

#: (what it is, pattern) - patterns run on the lower-cased text
PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "a date",
        re.compile(rf"(?<!\d){_YEAR}([-/.])(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])(?!\d)"),
    ),
    ("a date", re.compile(rf"(?<![\d.])\d{{1,2}}([-/.])\d{{1,2}}\1{_YEAR}(?!\d)")),
    ("a date", re.compile(r"(?<![\d.])\d{1,2}/\d{1,2}/\d{2}(?![\d/])")),
    ("a date", re.compile(rf"(?<!\d)\d{{1,2}}[-\s]?{_MONTH}[-\s,]*(?:{_YEAR}|\d{{2}})(?!\d)")),
    ("a date", re.compile(rf"(?<![a-z]){_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+{_YEAR}(?!\d)")),
    ("a DICOM person name", re.compile(r"[a-z][a-z'\-]*\^[a-z]")),
    (
        "a personal-data keyword",
        re.compile(
            r"(?<![a-z])(?:patient|birth|dob(?![a-z])|mrn(?![a-z])"
            r"|(?:sur|first|last|given|family|full)?names?(?![a-z]))"
        ),
    ),
    ("a run of 6 or more digits", re.compile(r"\d{6,}")),
)

#: software version tokens (``v1.0.20211006``, dcm2niix's) are not identifiers
_VERSION = re.compile(r"(?<![a-z0-9])v\d+(?:\.\d+)+")


def header_text(header: object) -> dict[str, str]:
    """The checked free-text fields a header has, decoded (latin-1) and stripped."""
    texts: dict[str, str] = {}
    keys = header.keys() if hasattr(header, "keys") else ()
    for field in TEXT_FIELDS:
        if field not in keys:
            continue
        raw = np.asarray(header[field]).item()  # type: ignore[index]
        text = raw.decode("latin-1") if isinstance(raw, bytes) else str(raw)
        texts[field] = text.replace("\x00", " ").strip()
    return texts


def identifying_reasons(text: str) -> list[str]:
    """What in ``text`` looks identifying (e.g. ``["a date"]``); empty when nothing."""
    lowered = _VERSION.sub(" ", text.lower())
    reasons: list[str] = []
    for reason, pattern in PATTERNS:
        if reason not in reasons and pattern.search(lowered):
            reasons.append(reason)
    return reasons


def header_findings(header: object, file: str | None) -> list[Finding]:
    """One ``identifying_text`` finding per header field that holds identifying text."""
    found = []
    for field, text in header_text(header).items():
        reasons = identifying_reasons(text)
        if reasons:
            found.append(
                finding(
                    "identifying_text",
                    f"header field {field!r} holds {' and '.join(reasons)} "
                    "(text not repeated here); clear the field",
                    file,
                )
            )
    return found
