"""fedshift adapt end to end: adapt -> predict on a phantom site; the input package stays
byte for byte; refusals are one line with exit code 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import pytest

from fedshift.bundle import load_bundle
from fedshift.cli import main


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_adapt_then_predict(federation, target_site, tmp_path, capsys) -> None:
    model = federation["with_reference"]
    before = _hashes(model)
    out = tmp_path / "adapted"
    code = main(
        [
            "adapt",
            str(model),
            str(target_site),
            "--out",
            str(out),
            "--steps",
            "2",
            "--device",
            "cpu",
            "guard.every=1",
            "max_images=3",
        ]  # fmt: skip
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "jdot: 2 of 2 steps on 3 images" in printed and f"adapted package: {out}" in printed
    assert _hashes(model) == before  # the package adapted from is never modified
    adapted = load_bundle(out)
    record = adapted.info["adaptation"]
    assert record["method"] == "jdot" and record["steps_run"] == 2 and record["images"] == 3
    assert record["source"]["sha256"] and record["stop_reason"] == "done: 2 steps"
    assert [v["step"] for v in record["guard"]["values"]] == [0, 1, 2]
    assert adapted.threshold == load_bundle(model).threshold
    assert adapted.reference is not None and adapted.info["reference"]["classes"]

    masks = tmp_path / "masks"
    code = main(["predict", str(out), str(target_site / "imagesTs"), "--out", str(masks),
                 "--device", "cpu", "--no-report"])  # fmt: skip
    assert code == 0
    written = sorted(masks.glob("*.nii.gz"))
    assert [p.name for p in written] == ["target_ts00.nii.gz"]
    assert nib.load(str(written[0])).shape == (32, 32, 32)
    summary = json.loads((masks / "predict.json").read_text())
    assert summary["model"]["package"] == str(out.resolve())
    assert summary["model"]["adaptation"]["method"] == "jdot"  # masks say which model made them


def test_adapting_an_adapted_package_keeps_the_history(federation, target_site, tmp_path) -> None:
    first, second = tmp_path / "a1", tmp_path / "a2"
    common = ["--device", "cpu", "--steps", "1", "max_images=1", "guard.images=1"]
    assert main(["adapt", str(federation["without_reference"]), str(target_site), "--out",
                 str(first), "--method", "pseudo", *common]) == 0  # fmt: skip
    assert main(["adapt", str(first), str(target_site), "--out", str(second), "--method",
                 "pseudo", "--split", "test", *common]) == 0  # fmt: skip
    record = load_bundle(second).info["adaptation"]
    assert record["split"] == "test" and record["previous"]["split"] == "train"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--method", "adabn"], "uses instance normalisation"),
        (["tent.prior_weight=-1"], "tent.prior_weight=-1.0 is invalid: expected a number >= 0"),
        (["--device", "cuda:7"], "--device=cuda:7 is invalid"),
    ],
)
def test_refusals_are_one_line(federation, target_site, tmp_path, capsys, args, says) -> None:
    code = main(["adapt", str(federation["with_reference"]), str(target_site), "--out",
                 str(tmp_path / "x"), *args])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not (tmp_path / "x").exists()


def test_no_reference_and_output_inside_the_package_are_refused(
    federation, target_site, capsys
) -> None:
    model = federation["without_reference"]
    assert main(["adapt", str(model), str(target_site), "--out", str(model.parent / "y")]) == 2
    assert "needs the federation's reference (models/reference.npz" in capsys.readouterr().err
    assert main(["adapt", str(model), str(target_site), "--out", str(model / "sub")]) == 2
    assert "inside the package adapted from" in capsys.readouterr().err
