"""``fedshift readiness``: exit status, messages and where the report goes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mri_fixtures import make_site

from fedshift.cli import main


def test_writes_the_report_and_exits_0(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["readiness", str(site), "--out", str(out), "--workers", "1"]) == 0
    report = json.loads((out / "readiness.json").read_text())
    assert report["level"] == "A"
    assert (out / "readiness.html").is_file()
    printed = capsys.readouterr().out
    assert "level A" in printed and "6 of 6 cases usable" in printed


def test_default_out_is_in_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_site(tmp_path / "data", n_cases=2, name="hospital1")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["readiness", str(root), "--workers", "1"]) == 0
    assert (work / "readiness" / "hospital1" / "readiness.json").is_file()


def test_exit_0_even_when_the_level_is_d(site: Path, tmp_path: Path) -> None:
    for image in (site / "imagesTr").iterdir():
        image.write_text("junk")
    assert main(["readiness", str(site), "--out", str(tmp_path / "o"), "--workers", "1"]) == 0
    assert json.loads((tmp_path / "o" / "readiness.json").read_text())["level"] == "D"


@pytest.mark.parametrize(
    "args,message",
    [
        (["{missing}"], "does not exist"),
        (["{site}", "--out", "{site}/report"], "inside the site folder"),
        (["{site}", "--workers", "0"], "workers"),
        (["{site}", "--config", "{missing}.yaml"], "does not exist"),
        (["{site}", "--out", "{blocker}/out"], "cannot write the report"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    site: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    filled = [a.format(site=site, missing=tmp_path / "missing", blocker=blocker) for a in args]
    if "--out" not in filled:
        filled += ["--out", str(tmp_path / "out")]
    assert main(["readiness", *filled]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("fedshift readiness:")
    assert not (site / "report").exists()
