"""Device settings: refused at start-up on a machine that cannot honour them, and the GPU
share each simulated site asks Ray for.

The refusals are the branch this machine kind takes (no CUDA GPU): those tests skip where
torch sees one. The share is a pure function of the counts, tested for any counts.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from fedshift import cli
from fedshift.config import load_config
from fedshift.errors import ConfigError
from fedshift.model.device import (
    RAY_RESOURCE_UNITS,
    check_devices,
    choose_device,
    describe_devices,
    gpu_share,
)
from fedshift.runconfig import RunConfig

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a CUDA GPU")

NO_CUDA = (
    "is invalid: expected a CUDA GPU, and torch sees no CUDA device "
    "(torch.cuda.is_available() is False); use "
)


# --- the check ---------------------------------------------------------------------------


@no_gpu
@pytest.mark.parametrize("name", ["cuda", "cuda:0", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line_naming_the_setting(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_devices(name)
    assert str(err.value) == f"seg.train.device={name} {NO_CUDA}auto or cpu"
    with pytest.raises(ConfigError, match=f"^seg.train.device={name} is invalid"):
        choose_device(name)  # where a model is built: the same message


@no_gpu
def test_a_gpu_share_without_a_gpu_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        check_devices("auto", gpus_per_site=0.5)
    assert str(err.value) == f"simulation.gpus_per_site=0.5 {NO_CUDA}auto or 0"


@no_gpu
def test_auto_and_cpu_pass_and_choose_the_cpu() -> None:
    for name, share in (("auto", None), ("cpu", None), ("auto", 0.0), ("cpu", 0.0)):
        check_devices(name, share, cpus_per_site=1.0)
    assert choose_device("auto") == torch.device("cpu")


@no_gpu
def test_the_start_up_line_says_cpu_and_why() -> None:
    line = describe_devices()  # what `fedshift site` logs before it joins
    assert line.startswith(f"training device: cpu (torch {torch.__version__} sees no CUDA")


def test_simulated_sites_on_cuda_need_a_gpu_share() -> None:
    """Ray hides the GPU from an actor that asks for none: refused whatever the machine."""
    with pytest.raises(ConfigError) as err:
        check_devices("cuda", gpus_per_site=0.0)
    assert str(err.value).startswith("simulation.gpus_per_site=0.0 is invalid: expected auto")


@pytest.mark.parametrize(
    ("name", "key"), [("tpu", "seg.train.device"), ("cuda:x", "seg.train.device")]
)
def test_unknown_device_names_list_the_valid_ones(name: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_devices(name)
    assert str(err.value) == f"{key}={name} is invalid: expected auto, cpu, cuda or cuda:N"


def test_more_cores_per_site_than_the_machine_has() -> None:
    cores = os.cpu_count() or 1
    check_devices("cpu", cpus_per_site=float(cores))
    with pytest.raises(ConfigError, match=rf"^simulation.cpus_per_site=.* at most {cores} "):
        check_devices("cpu", cpus_per_site=cores + 1.0)


def test_gpus_per_site_is_auto_or_a_number() -> None:
    def share(value: str) -> float | None:
        return load_config(
            RunConfig, [], [f"simulation.gpus_per_site={value}"]
        ).simulation.fixed_gpus

    assert RunConfig().simulation.gpus_per_site == "auto"
    assert share("auto") is None
    assert (share("0"), share("0.25"), share("1"), share("2")) == (0.0, 0.25, 1.0, 2.0)
    for bad, echo in (("-1", "-1"), ("1.5", "1.5"), ("none", "none"), ("0.00001", "1e-05")):
        with pytest.raises(ConfigError) as err:
            share(bad)
        assert str(err.value).startswith(
            f"simulation.gpus_per_site={echo} is invalid: expected auto or a number >= 0"
        )


# --- at start-up: refused before any data is generated -----------------------------------


@no_gpu
@pytest.mark.parametrize(
    ("command", "override", "message"),
    [
        (["simulate"], "seg.train.device=cuda", f"seg.train.device=cuda {NO_CUDA}auto or cpu"),
        (["baseline", "local"], "seg.train.device=cuda:0", "seg.train.device=cuda:0 "),
        (["simulate"], "simulation.gpus_per_site=0.5", "simulation.gpus_per_site=0.5 "),
    ],
    ids=["simulate-cuda", "baseline-cuda:0", "simulate-gpu-share"],
)
def test_commands_refuse_before_generating_data(
    command: list[str],
    override: str,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    where = [f"data.synth_dir={tmp_path / 'fed'}", f"data.cache_dir={tmp_path / 'cache'}"]
    code = cli.main([*command, override, *where, f"out={tmp_path / 'run'}"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith(f"fedshift {command[0]}: error: {message}") and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no federation, cache or run


@no_gpu
def test_a_baseline_ignores_the_simulation_gpu_share(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`fedshift simulate` refuses cuda with no GPU share for its Ray sites; the baseline
    trains in its own process, so it names the missing GPU instead (before any data)."""
    where = [f"data.synth_dir={tmp_path / 'fed'}", f"out={tmp_path / 'run'}"]
    settings = ["seg.train.device=cuda", "simulation.gpus_per_site=0", *where]
    assert cli.main(["simulate", *settings]) == 2
    assert "error: simulation.gpus_per_site=0.0 is invalid" in capsys.readouterr().err
    assert cli.main(["baseline", "local", *settings]) == 2
    assert f"error: seg.train.device=cuda {NO_CUDA}" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


# --- the share of a GPU each simulated site asks for --------------------------------------


def _pool(share: float, cpus_per_site: float, total_cpus: int, n_gpus: int) -> int:
    """Workers in Flower's Ray pool (flwr's ``pool_size_from_resources``, one node)."""
    return min(int(total_cpus / cpus_per_site), int(n_gpus / share))


@pytest.mark.parametrize(
    ("n_sites", "cpus_per_site", "total_cpus", "n_gpus", "expected"),
    [
        (5, 1.0, 16, 1, 0.2),  # the default federation on a 16-core GPU machine
        (5, 3.0, 16, 1, 0.2),  # configs/gpu-1mm.yaml there: 5 sites at once
        (5, 4.0, 16, 1, 0.25),  # 4 cores a site: 4 at once
        (5, 1.0, 2, 1, 0.5),  # 2 cores: 2 at once
        (1, 1.0, 16, 1, 1.0),  # one site: the whole GPU
        (6, 1.0, 16, 1, 0.1666),  # rounded down to Ray's units, never 0.1667
        (5, 1.0, 16, 4, 0.5),  # 4 GPUs: 2 on a GPU (0.8 each would fit one per GPU)
        (3, 1.0, 16, 4, 1.0),
        (5, 1.0, 16, 0, 0.0),  # no GPU: the sites train on the CPU
        (5, 20.0, 16, 1, 1.0),  # no core for a site: one at once (the check refuses it)
    ],
)
def test_gpu_share_examples(
    n_sites: int, cpus_per_site: float, total_cpus: int, n_gpus: int, expected: float
) -> None:
    assert gpu_share(n_sites, cpus_per_site, total_cpus, n_gpus) == expected


@pytest.mark.parametrize("n_gpus", [1, 2, 3, 8])
def test_every_site_that_runs_at_once_gets_a_worker_and_fits_on_a_gpu(n_gpus: int) -> None:
    for n_sites in range(1, 130):
        for cpus_per_site, total_cpus in ((1.0, 16), (0.5, 16), (3.0, 16), (1.0, 2), (2.0, 128)):
            share = gpu_share(n_sites, cpus_per_site, total_cpus, n_gpus)
            at_once = max(1, min(n_sites, int(total_cpus / cpus_per_site)))
            units = round(share * RAY_RESOURCE_UNITS)
            assert math.isclose(units, share * RAY_RESOURCE_UNITS, abs_tol=1e-6)
            assert 0 < units <= RAY_RESOURCE_UNITS
            # Ray places a fractional request on one GPU: the workers of one GPU fit it
            per_gpu = math.ceil(at_once / n_gpus)
            assert per_gpu * units <= RAY_RESOURCE_UNITS
            pool = _pool(share, cpus_per_site, total_cpus, n_gpus)
            assert pool >= at_once  # no site that could run waits for a worker
            if n_gpus == 1 and at_once < 110:
                assert pool == at_once  # and no idle worker holds a CUDA context
