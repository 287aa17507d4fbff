"""configs/gpu-1mm.yaml: the default run at 1 mm for a machine with a CUDA GPU.

``fedshift simulate --config configs/gpu-1mm.yaml`` reads it *instead of* default.yaml,
so it must hold what default.yaml sets; the simulation's Ray backend gives each site the
share of the GPU that ``simulation.gpus_per_site=auto`` asks for.
"""

from __future__ import annotations

import os
from dataclasses import replace

from fedshift.config import CONFIG_DIR, load_config
from fedshift.fl.simulation import backend_config
from fedshift.model.config import SegConfig
from fedshift.model.device import check_devices, cuda_count, gpu_share
from fedshift.runconfig import RunConfig, SimulationConfig, default_run, synth_config
from fedshift.site.folders import synth_root

PRESET = CONFIG_DIR / "gpu-1mm.yaml"
SITES = ["data.sites=[s0,s1,s2,s3]", "data.target=[t]"]  # as resolve_sites names them


def preset(*overrides: str) -> RunConfig:
    return load_config(RunConfig, [PRESET], overrides)


def test_the_preset_alone_is_the_preset_over_default_yaml() -> None:
    """What --config gives equals default.yaml then the preset: nothing of the default run
    (secure statistics, the intensity map) is lost by replacing default.yaml."""
    over_default = load_config(RunConfig, [CONFIG_DIR / "default.yaml", PRESET])
    assert preset() == over_default
    assert over_default.fed.secure_stats and over_default.fed.align_intensity


def test_a_1mm_federation_of_its_own() -> None:
    cfg = preset()
    synth = synth_config(cfg)
    assert synth.voxel_mm == 1.0 and synth.name == "default-1mm"
    assert list(synth.sites) == list(synth_config(default_run()).sites)  # same hospitals
    assert synth_root(cfg) != synth_root(default_run())  # not the 3 mm federation's folder
    assert cfg.out != default_run().out


def test_gpu_settings_differ_from_the_cpu_defaults_where_meant() -> None:
    cfg, cpu = preset().seg, SegConfig()
    assert cfg.train.device == "auto" and cfg.train.amp
    assert cfg.train.patch_size == (96, 96, 96) and cfg.train.batch_size == 2
    assert cfg.train.local_steps > cpu.train.local_steps
    assert cfg.preprocess.n4_shrink > cpu.preprocess.n4_shrink
    assert cfg.eval.sw_overlap < cpu.eval.sw_overlap
    # the fast alignment settings of simulations/bench_adaptation.py (FAST_ALIGN)
    assert (cfg.align.solver, cfg.align.tol, cfg.align.every) == ("sinkhorn", 1e-3, 2)
    assert cfg.align.method == "none"  # as the default run; jdot is one override away
    assert preset("seg.align.method=jdot").seg.align.solver == "sinkhorn"


def test_the_backend_gives_each_site_its_cores_and_gpu_share() -> None:
    cfg = preset(*SITES)
    cores, gpus = os.cpu_count() or 1, cuda_count()
    backend = backend_config(cfg, verbose=False)
    resources = backend["client_resources"]
    assert resources == {"num_cpus": 3.0, "num_gpus": gpu_share(5, 3.0, cores, gpus)}
    if gpus == 0:
        assert resources["num_gpus"] == 0.0 and "num_gpus" not in backend["init_args"]
    else:
        assert 0.0 < resources["num_gpus"] <= 1.0 and backend["init_args"]["num_gpus"] == gpus
    on_cpu = replace(cfg, seg=replace(cfg.seg, train=replace(cfg.seg.train, device="cpu")))
    assert backend_config(on_cpu, verbose=False)["client_resources"]["num_gpus"] == 0.0
    fixed = replace(cfg, simulation=SimulationConfig(cpus_per_site=1.0, gpus_per_site="0.25"))
    assert backend_config(fixed, verbose=False)["client_resources"] == {
        "num_cpus": 1.0,
        "num_gpus": 0.25,
    }


def test_the_preset_passes_the_device_check_with_or_without_a_gpu() -> None:
    cfg = preset()
    assert cfg.simulation.fixed_gpus is None  # auto: sized at start, never refused
    check_devices(cfg.seg.train.device, cfg.simulation.fixed_gpus)
