"""The synthetic federation a run generates on first use: reused when the same settings
made it, never left half-written by an interrupted generation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedshift.config import load_config
from fedshift.errors import UsageError
from fedshift.runconfig import RunConfig
from fedshift.site import folders as sites

SCENARIO = """
name: tiny
sites:
  a: {}
  t: {labelled: false, noise: 0.05}
"""


def _cfg(tmp_path: Path) -> RunConfig:
    (tmp_path / "tiny.yaml").write_text(SCENARIO)
    return load_config(
        RunConfig,
        [],
        [
            f"data.scenario={tmp_path / 'tiny.yaml'}",
            "data.synth_overrides=[voxel_mm=6,n_train=2,n_test=1]",
            f"data.synth_dir={tmp_path / 'data'}",
        ],
    )


def test_an_interrupted_generation_leaves_nothing_the_next_run_trips_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path)
    real = sites.write_federation

    def interrupted(synth, out, **kwargs):  # writes a first file, then the user hits Ctrl-C
        Path(out, "a").mkdir(parents=True)
        Path(out, "a", "dataset.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(sites, "write_federation", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sites.ensure_synthetic(cfg)
    root = tmp_path / "data"
    assert not root.exists() and (tmp_path / ".data.partial").is_dir()

    monkeypatch.setattr(sites, "write_federation", real)
    assert sites.ensure_synthetic(cfg) == root
    assert (root / "truth.json").is_file() and (root / "t" / "imagesTs").is_dir()
    assert not (tmp_path / ".data.partial").exists()
    made = (root / "truth.json").stat().st_mtime_ns
    assert sites.ensure_synthetic(cfg) == root  # reused, not regenerated
    assert (root / "truth.json").stat().st_mtime_ns == made


def test_a_folder_without_a_finished_federation_is_refused_and_kept(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "data" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds no finished synthetic federation"):
        sites.ensure_synthetic(cfg)
    assert (tmp_path / "data" / "notes.txt").read_text() == "mine"


def test_a_federation_written_before_a_new_knob_is_still_recognised() -> None:
    """A scenario.yaml that predates a per-site or global setting (which is off by
    default, so nothing generated changes) describes the same federation; any other
    difference does not."""
    import dataclasses

    from fedshift.config import CONFIG_DIR, load_config, to_yaml
    from fedshift.data.synth.config import SynthConfig
    from fedshift.site.folders import same_federation

    cfg = load_config(SynthConfig, [CONFIG_DIR / "scenarios" / "default.yaml"], ["seed=0"])
    written = to_yaml(cfg)
    older = "\n".join(
        line
        for line in written.splitlines()
        if "field_t" not in line and "spike_strength" not in line
    )
    assert older != written
    assert same_federation(older, cfg)
    assert not same_federation(older, dataclasses.replace(cfg, seed=1))
    sites = dict(cfg.sites)
    sites["site0"] = dataclasses.replace(sites["site0"], field_t=3.0)
    assert not same_federation(older, dataclasses.replace(cfg, sites=sites))
    assert not same_federation("sites: [", cfg)
