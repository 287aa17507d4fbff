"""fedshift.readiness.identifiers: identifying text in NIfTI header fields."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from mri_fixtures import write_nifti

from fedshift.readiness.identifiers import header_findings, header_text, identifying_reasons

IDENTIFYING = [
    ("2021-03-14", "a date"),
    ("scan 14.03.2021", "a date"),
    ("03/14/21", "a date"),
    ("12 Mar 2021", "a date"),
    ("March 12, 2021", "a date"),
    ("12-MAR-2021", "a date"),
    ("DOE^JOHN", "a DICOM person name"),
    ("Patient John", "a personal-data keyword"),
    ("PatientName", "a personal-data keyword"),
    ("DOB 1970", "a personal-data keyword"),
    ("birthdate", "a personal-data keyword"),
    ("MRN 4411", "a personal-data keyword"),
    ("surname", "a personal-data keyword"),
    ("id 1234567", "a run of 6 or more digits"),
    ("TE=80;Time=143022.000", "a run of 6 or more digits"),
]

BENIGN = [
    "",
    "FSL5.0",
    "synthetic FedShift phantom",
    "FedShift synthetic FLAIR phantom",
    "FreeSurfer 7.1.1",
    "dcm2niix v1.0.20211006",
    "T1w MPRAGE 1mm",
    "TR=2000 TE=30",
    "spm - realigned",
    "mni152 2009c",
    "Filename",
    "namespace",
    "5.0.1",
]


@pytest.mark.parametrize("text,reason", IDENTIFYING)
def test_identifying_text_is_recognised(text: str, reason: str) -> None:
    assert reason in identifying_reasons(text)


@pytest.mark.parametrize("text", BENIGN)
def test_benign_text_is_left_alone(text: str) -> None:
    assert identifying_reasons(text) == []


@pytest.mark.parametrize(
    "field,value",
    [
        ("descrip", "DOE^JOHN"),
        ("aux_file", "2021-03-14"),
        ("intent_name", "patient"),
        ("db_name", "1234567"),
    ],
)
def test_each_nifti1_field_is_checked(tmp_path: Path, field: str, value: str) -> None:
    path = write_nifti(tmp_path / "x.nii.gz", np.ones((4, 4, 4)), **{field: value})
    found = header_findings(nib.load(path).header, "x.nii.gz")
    assert [f.code for f in found] == ["identifying_text"]
    assert field in found[0].message
    assert value not in found[0].message  # the report never copies identifying text


def test_nifti2_has_no_db_name_and_is_checked(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "x.nii", np.ones((4, 4, 4)), nifti2=True, descrip="Doe^Jane")
    header = nib.load(path).header
    assert "db_name" not in header_text(header)
    assert [f.code for f in header_findings(header, None)] == ["identifying_text"]


def test_clean_header_has_no_finding(tmp_path: Path) -> None:
    path = write_nifti(tmp_path / "x.nii.gz", np.ones((4, 4, 4)), descrip="FSL5.0")
    assert header_findings(nib.load(path).header, "x") == []
