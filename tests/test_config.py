"""Config: one source of truth, one error style, validation wherever an instance is built."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import replace
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from fedshift.config import CONFIG_DIR, load_config
from fedshift.errors import ConfigError
from fedshift.runconfig import RunConfig, default_run

#: every config error reads ``key=value is invalid: ...`` (a file: ``config file F is ...``)
STYLE = re.compile(r"^(\S+=.* is invalid: |config file \S+ is invalid: expected )")


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["fed.rounds=0"], "fed.rounds=0 is invalid: expected an integer >= 1"),
        (
            ["foo.bar=1"],
            "foo.bar=1 is invalid: unknown key 'foo'; "
            "valid keys: name, out, seed, resume, data, fed, seg, simulation",
        ),
        (
            ["data.sites=/a"],
            "data.sites=/a is invalid: expected a list of strings; write a list: data.sites=[/a]",
        ),
        (["fed.rounds=abc"], "fed.rounds=abc is invalid: expected an integer"),
        (["fed.rounds=[1,2]"], "fed.rounds=[1,2] is invalid: expected an integer"),
        (
            ["seg.train.patch_size=[a,b,c]"],
            "seg.train.patch_size=[a,b,c] is invalid: expected a list of 3 integers",
        ),
        (
            ["seg.train.patch_size=[48,48]"],
            "seg.train.patch_size=[48,48] is invalid: expected a list of 3 integers",
        ),
        (
            ["fed.aggregator=fedmagic"],
            "fed.aggregator=fedmagic is invalid: expected one of: fedavg, fedprox, fedavgm, "
            "fedadam, fedyogi, fedtrimmedavg",
        ),
        (
            ["seg.align.method=magic"],
            "seg.align.method=magic is invalid: expected one of: none, jdot, moments",
        ),
        (["seg.align.tol=0"], "seg.align.tol=0.0 is invalid: expected a number > 0"),
        (["seg.train.lr=-1"], "seg.train.lr=-1.0 is invalid: expected a number > 0"),
        (["fed.timeout_s=inf"], "fed.timeout_s=inf is invalid: expected a finite number > 0"),
        (["rounds"], "rounds is invalid: expected key=value, e.g. fed.rounds=3"),
    ],
)
def test_errors_echo_the_full_key_the_value_and_what_is_allowed(
    overrides: list[str], message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, [], overrides)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "overrides,fragment",
    [
        (["fed.nosuch=1"], "unknown key 'nosuch' in fed; valid keys: aggregator, rounds,"),
        (["seg.train.nosuch=1"], "unknown key 'nosuch' in seg.train; valid keys: patch_size,"),
        (["fed=3"], "expected a group of settings (fed.KEY=VALUE), keys: aggregator,"),
        (["seg.train.patch_size=[50,48,48]"], "expected multiples of 8 (the product of"),
        (["seg.align.method=jdot"], "expected none unless fed.secure_stats=true"),
        (["fed.align_intensity=true"], "expected false unless fed.secure_stats=true"),
        (["seg.model.strides=[2,2]"], "expected 3 integers >= 1 (one fewer than"),
        (["data.target=[a"], "expected a YAML value"),
    ],
)
def test_every_error_has_the_one_style(overrides: list[str], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, [], overrides)
    assert STYLE.match(str(err.value)), str(err.value)
    assert fragment in str(err.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError, match=r"^config file .*missing.yaml is invalid: expected an"):
        load_config(RunConfig, [missing])
    bad = tmp_path / "bad.yaml"
    bad.write_text("fed: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is invalid: expected YAML \("):
        load_config(RunConfig, [bad])
    listed = tmp_path / "list.yaml"
    listed.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of key: value"):
        load_config(RunConfig, [listed])
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("fed:\n  roundz: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(RunConfig, [unknown])
    assert str(err.value).startswith(f"fed.roundz=3 (in {unknown}) is invalid: unknown key")
    scalar_list = tmp_path / "sites.yaml"
    scalar_list.write_text("data:\n  sites: /a\n")
    with pytest.raises(ConfigError, match=r"write a list: \[/a\]$"):
        load_config(RunConfig, [scalar_list])


def test_partial_yaml_merges_onto_the_defaults(tmp_path: Path) -> None:
    partial = tmp_path / "run.yaml"
    partial.write_text("fed:\n  rounds: 2\nseg:\n  train:\n    lr: 0.01\n")
    cfg = load_config(RunConfig, [partial], ["seg.train.batch_size=4"])
    assert (cfg.fed.rounds, cfg.seg.train.lr, cfg.seg.train.batch_size) == (2, 0.01, 4)
    assert cfg.fed.aggregator == "fedavg" and cfg.seg.train.patch_size == (48, 48, 48)
    assert isinstance(cfg.seg.train.patch_size, tuple)


def test_replace_is_validated_too() -> None:
    cfg = RunConfig()
    with pytest.raises(ConfigError, match=r"^fed.rounds=0 is invalid: expected an integer >= 1$"):
        replace(cfg.fed, rounds=0)
    with pytest.raises(ConfigError, match=r"^seg.train.lr=fast is invalid: expected a number$"):
        replace(cfg.seg.train, lr="fast")
    with pytest.raises(ConfigError, match=r"^seg.align.every=0 is invalid"):
        replace(cfg.seg.align, every=0)
    jdot = replace(cfg.seg, align=replace(cfg.seg.align, method="jdot"))
    with pytest.raises(ConfigError, match="fed.secure_stats=true"):
        replace(cfg, seg=jdot)
    with pytest.raises(ConfigError, match="multiples of 8"):
        replace(cfg.seg, train=replace(cfg.seg.train, patch_size=(50, 48, 48)))
    # a list where a tuple is declared is taken, as a tuple (frozen configs stay hashable)
    assert replace(cfg.data, sites=["a", "b"]).sites == ("a", "b")
    assert replace(cfg, seg=jdot, fed=replace(cfg.fed, secure_stats=True)).aligns_embeddings


def _leaves(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        dotted = f"{prefix}.{key}" if prefix else key
        out.update(_leaves(value, dotted) if isinstance(value, dict) else {dotted: value})
    return out


def test_default_yaml_holds_only_what_differs_from_the_dataclasses() -> None:
    tree = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "default.yaml"))
    defaults = RunConfig()
    for key, value in _leaves(tree).items():
        default = defaults
        for part in key.split("."):
            default = getattr(default, part)
        if isinstance(default, tuple):
            value = tuple(value)
        assert value != default, f"configs/default.yaml repeats the default of {key}"


def test_every_setting_has_help() -> None:
    def walk(obj: object, prefix: str) -> list[str]:
        missing = []
        for f in dataclasses.fields(obj):
            key = f"{prefix}{f.name}"
            if not f.metadata.get("help"):
                missing.append(key)
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                missing += walk(value, f"{key}.")
        return missing

    assert walk(default_run(), "") == []


def test_a_list_of_setting_groups_loads_from_yaml(tmp_path) -> None:
    """The coordinator's enrolled sites are a list of groups (name, public_key); each item
    comes from YAML as a mapping, which the loader must accept (the loopback deployment
    broke on this once)."""
    from fedshift.deploy.config import CoordinatorConfig

    path = tmp_path / "coordinator.yaml"
    path.write_text(
        "sites:\n- {name: site0, public_key: k0.pub}\n- {name: site1, public_key: k1.pub}\n"
    )
    cfg = load_config(CoordinatorConfig, [path])
    assert [s.name for s in cfg.sites] == ["site0", "site1"]
    with pytest.raises(ConfigError, match="sites=\\[3\\] is invalid"):
        load_config(CoordinatorConfig, [path], ["sites=[3]"])
