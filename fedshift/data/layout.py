"""A site folder in nnU-Net v2 raw layout, and the MONAI dataset built from it.

Layout (what imaging groups already have)::

    SITE/dataset.json
    SITE/imagesTr/<case>_0000.nii.gz     training images (channel 0000)
    SITE/labelsTr/<case>.nii.gz          training labels (absent for an unlabelled site)
    SITE/imagesTs/, SITE/labelsTs/       optional held-out test split
    SITE/labelsTr_raters/<rater>/<case>.nii.gz   optional extra raters
    SITE/calibration/{images,reference,labels}/  optional shared calibration cases, the
                                         reference standard and this site's annotation
                                         of them (:mod:`fedshift.shift.calibration`)

:func:`discover_site` never raises on bad content: problems with the layout are returned
as findings, so readiness can report them. Readiness, training and evaluation all start
from the same :class:`Case` list.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fedshift.data.nifti import NIFTI_SUFFIXES, is_nifti, strip_nifti_suffix
from fedshift.errors import UsageError
from fedshift.findings import Finding, finding

Split = Literal["train", "test"]

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_SPLIT_DIRS: dict[Split, tuple[str, str]] = {
    "train": ("imagesTr", "labelsTr"),
    "test": ("imagesTs", "labelsTs"),
}
RATERS_DIR = "labelsTr_raters"
CALIBRATION_DIR = "calibration"


@dataclass(frozen=True)
class Case:
    """One case of one split: its image channels, its label and extra raters' labels."""

    case_id: str
    split: Split
    images: tuple[Path, ...]
    label: Path | None = None
    raters: dict[str, Path] = field(default_factory=dict)

    @property
    def image(self) -> Path:
        """Channel 0000, the image FedShift segments."""
        return self.images[0]

    def as_dict(self) -> dict[str, Any]:
        """The MONAI dict a transform chain starts from."""
        item: dict[str, Any] = {"case": self.case_id, "split": self.split, "image": str(self.image)}
        if self.label is not None:
            item["label"] = str(self.label)
        return item


@dataclass(frozen=True)
class SiteLayout:
    """What :func:`discover_site` found in a site folder."""

    root: Path
    name: str
    dataset_json: dict[str, Any] | None
    cases: tuple[Case, ...]
    has_train_labels: bool
    problems: tuple[Finding, ...]

    @property
    def structured(self) -> bool:
        """True when the folder follows the nnU-Net layout (no ``unstructured`` finding)."""
        return not any(p.code == "unstructured" for p in self.problems)

    def split(self, split: Split) -> list[Case]:
        return [c for c in self.cases if c.split == split]

    def rel(self, path: Path | None) -> str | None:
        """A path relative to the site folder, as findings show it."""
        if path is None:
            return None
        try:
            return str(Path(path).relative_to(self.root))
        except ValueError:
            return str(path)

    @property
    def modality(self) -> str:
        """Channel 0's name from dataset.json (``"FLAIR"`` when not given)."""
        channels = (self.dataset_json or {}).get("channel_names") or {}
        return str(channels.get("0", "FLAIR")) if isinstance(channels, dict) else "FLAIR"


def _read_dataset_json(root: Path, problems: list[Finding]) -> dict[str, Any] | None:
    path = root / "dataset.json"
    if not path.is_file():
        problems.append(finding("unstructured", "dataset.json is missing", "dataset.json"))
        return None
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        problems.append(
            finding("unstructured", f"dataset.json is not valid JSON: {exc}", "dataset.json")
        )
        return None
    if not isinstance(meta, dict):
        problems.append(
            finding("unstructured", "dataset.json is not a JSON object", "dataset.json")
        )
        return None
    for key in ("channel_names", "labels"):
        if key not in meta:
            problems.append(finding("unstructured", f"dataset.json has no {key!r}", "dataset.json"))
    return meta


def _scan_images(folder: Path, root: Path, problems: list[Finding]) -> dict[str, dict[int, Path]]:
    """case -> {channel: path} for the image files of one folder."""
    found: dict[str, dict[int, Path]] = {}
    for path in sorted(folder.iterdir()):
        rel = str(path.relative_to(root))
        if not path.is_file() or not is_nifti(path):
            problems.append(finding("unexpected_file", f"{path.name} is not a NIfTI image", rel))
            continue
        match = _CHANNEL.match(strip_nifti_suffix(path.name))
        if match is None:
            problems.append(
                finding("unstructured", f"{path.name} lacks the _0000 channel suffix", rel)
            )
            continue
        found.setdefault(match["case"], {})[int(match["channel"])] = path
    return found


def _scan_labels(folder: Path, root: Path, problems: list[Finding]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.iterdir()):
        if path.is_file() and is_nifti(path):
            found[strip_nifti_suffix(path.name)] = path
        else:
            rel = str(path.relative_to(root))
            problems.append(finding("unexpected_file", f"{path.name} is not a NIfTI label", rel))
    return found


def _cases_of_split(
    root: Path, split: Split, problems: list[Finding], raters: dict[str, dict[str, Path]]
) -> tuple[list[Case], bool]:
    images_dir, labels_dir = (root / d for d in _SPLIT_DIRS[split])
    if not images_dir.is_dir():
        return [], False
    images = _scan_images(images_dir, root, problems)
    labels = _scan_labels(labels_dir, root, problems)
    has_labels = labels_dir.is_dir()
    cases = []
    for case_id, channels in sorted(images.items()):
        ordered = tuple(channels[k] for k in sorted(channels))
        if 0 not in channels:
            problems.append(
                finding(
                    "unstructured",
                    f"case {case_id} has no channel 0000",
                    str(ordered[0].relative_to(root)),
                )
            )
            continue
        label = labels.get(case_id)
        if has_labels and label is None:
            problems.append(
                finding(
                    "missing_label",
                    f"case {case_id} has no label in {labels_dir.name}/",
                    str(channels[0].relative_to(root)),
                )
            )
        case_raters = {r: files[case_id] for r, files in raters.items() if case_id in files}
        cases.append(Case(case_id, split, ordered, label, case_raters if split == "train" else {}))
    for case_id in sorted(set(labels) - set(images)):
        problems.append(
            finding(
                "missing_image",
                f"label {case_id} has no image {case_id}_0000 in {images_dir.name}/",
                str(labels[case_id].relative_to(root)),
            )
        )
    return cases, has_labels


def _scan_raters(root: Path, problems: list[Finding]) -> dict[str, dict[str, Path]]:
    base = root / RATERS_DIR
    if not base.is_dir():
        return {}
    return {
        rater.name: _scan_labels(rater, root, problems)
        for rater in sorted(base.iterdir())
        if rater.is_dir()
    }


def scan_calibration(root: Path) -> tuple[list[tuple[str, Path, Path]], list[Finding]]:
    """``(case, site label, reference label)`` for every calibration case the site
    annotated (``SITE/calibration/labels``; :mod:`fedshift.shift.calibration`), and a
    finding for each label without a reference of the same name."""
    base = Path(root) / CALIBRATION_DIR
    labels = base / "labels"
    if not labels.is_dir():
        return [], []
    pairs, problems = [], []
    for path in sorted(p for p in labels.iterdir() if is_nifti(p)):
        case = strip_nifti_suffix(path.name)
        found = [r for s in NIFTI_SUFFIXES if (r := base / "reference" / f"{case}{s}").is_file()]
        if found:
            pairs.append((case, path, found[0]))
        else:
            problems.append(
                finding(
                    "calibration",
                    f"calibration label {case!r} has no reference standard "
                    f"{CALIBRATION_DIR}/reference/{case}.nii.gz",
                    str(path.relative_to(root)),
                )
            )
    return pairs, problems


def discover_site(root: str | Path) -> SiteLayout:
    """Scan a site folder. Raises :class:`UsageError` only if ``root`` is not a folder."""
    if not Path(root).is_dir():
        raise UsageError(f"site folder {str(root)!r} does not exist or is not a folder")
    root = Path(root).resolve()  # case paths and SiteLayout.rel() agree on one absolute root
    problems: list[Finding] = []
    meta = _read_dataset_json(root, problems)
    raters = _scan_raters(root, problems)
    train, has_train_labels = _cases_of_split(root, "train", problems, raters)
    test, _ = _cases_of_split(root, "test", problems, {})
    problems += scan_calibration(root)[1]
    if not (root / "imagesTr").is_dir():
        problems.append(finding("unstructured", "imagesTr/ is missing", "imagesTr"))
    return SiteLayout(
        root=root,
        name=root.name,
        dataset_json=meta,
        cases=tuple(train + test),
        has_train_labels=has_train_labels,
        problems=tuple(problems),
    )


def site_items(
    site: SiteLayout,
    split: Split = "train",
    *,
    labelled_only: bool = False,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    """The MONAI dicts of a split, without the excluded case ids."""
    items = [c.as_dict() for c in site.split(split) if c.case_id not in exclude]
    if labelled_only:
        items = [i for i in items if "label" in i]
    return items


def site_dataset(
    site: SiteLayout,
    split: Split = "train",
    transform: Any = None,
    *,
    labelled_only: bool = False,
    exclude: set[str] | frozenset[str] = frozenset(),
) -> Any:
    """A ``monai.data.Dataset`` over a split. ``transform`` usually starts with
    :class:`fedshift.data.transforms.LoadVolumed` so that files are read by
    :func:`fedshift.data.nifti.read_volume`."""
    from monai.data import Dataset

    items = site_items(site, split, labelled_only=labelled_only, exclude=exclude)
    return Dataset(items, transform=transform)
