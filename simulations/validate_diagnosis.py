"""Does the shift diagnosis name what the synthetic scenarios plant?

For each scenario: a real federated simulation with secure statistics (skipped when
OUT/<scenario> already holds a finished run), then each site's verdict (diagnosis.json, what
the coordinator wrote) against the kinds of shift its settings plant (truth.json of the
generated data, :meth:`fedshift.data.synth.config.SiteSpec.planted_shifts`).

    python simulations/validate_diagnosis.py                      # 4 scenarios, ~35 min on 2 CPUs
    python simulations/validate_diagnosis.py --scenarios control annotation --out runs/check
    python simulations/validate_diagnosis.py fed.rounds=3          # overrides for every run

``--remeasure`` recomputes each site's indicators from its own shift folder
(``<run>/sites/<site>/shift``: its last statistics and the reference it received) with
today's code, then the verdicts, instead of reading the coordinator's diagnosis.json: a
change of the diagnosis rule is checked on finished runs without training again (a
change of the descriptors is not: the sites' statistics hold the old ones). It also reads
each site's calibration cases where its data folder has them (``--no-calibration``: not).

Writes OUT/diagnosis_check.md and OUT/diagnosis_check.json and prints the table. A
verdict is relative to the federation, the planted truth to the scenario's designer:
where the sites split evenly on a setting (two raters that drop small lesions, two that
keep them), a relative diagnosis has no majority to lean on.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import asdict, fields
from pathlib import Path

from fedshift.config import load_config
from fedshift.data.synth.config import SiteSpec
from fedshift.runconfig import RunConfig
from fedshift.shift.diagnosis import diagnose, measure
from fedshift.shift.indicators import OFFSET, SiteIndicators
from fedshift.site.calibration import measure_calibration
from fedshift.site.files import ShiftFolder

SCENARIOS = ("control", "acquisition", "population", "annotation")
FAMILIES = ("acquisition", "population", "annotation")


def run_scenario(scenario: str, out: Path, overrides: list[str]) -> float:
    """Run the simulation unless its diagnosis exists; returns seconds spent."""
    metrics = out / "metrics.json"
    if metrics.is_file() and json.loads(metrics.read_text()).get("final"):
        print(f"{scenario}: reusing {out}", flush=True)
        return 0.0
    cmd = [
        sys.executable,
        "-m",
        "fedshift.cli",
        "simulate",
        f"data.scenario={scenario}",
        "fed.secure_stats=true",
        f"out={out}",
        *overrides,
    ]
    print(f"{scenario}: {' '.join(cmd[3:])}", flush=True)
    start = time.perf_counter()
    log = out.parent / f"{scenario}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"{scenario}: simulation failed ({proc.returncode}); see {log}")
    return time.perf_counter() - start


def truth_of(run: Path) -> dict[str, list[str]]:
    """Site -> planted kinds, from the truth.json next to the run's site folders."""
    cfg = load_config(RunConfig, [run / "config.yaml"])
    if not cfg.all_sites:
        raise SystemExit(f"{run}/config.yaml names no site folder")
    truth = json.loads((Path(cfg.all_sites[0]).parent / "truth.json").read_text())
    known = {f.name for f in fields(SiteSpec)}
    return {
        name: SiteSpec(**{k: v for k, v in info["spec"].items() if k in known}).planted_shifts()
        for name, info in truth["sites"].items()
    }


def remeasure(run: Path, calibrated: bool = True) -> dict:
    """The diagnosis.json the coordinator would write today, from the sites' own folders
    (and, with ``calibrated``, their calibration cases where the data folder has them)."""
    indicators = remeasured_indicators(run, calibrated)
    verdicts = {d.site: d for d in diagnose(indicators)}
    return {
        "sites": {
            i.site: {"shift": verdicts[i.site].shift, "indicators": asdict(i)} for i in indicators
        }
    }


def remeasured_indicators(
    run: Path, calibrated: bool = True, centre: str = "federation"
) -> list[SiteIndicators]:
    """Every site's indicators measured today from its own shift folder (see
    :func:`remeasure`; ``centre``: see :func:`fedshift.shift.diagnosis.measure`)."""
    indicators = []
    data = {Path(d).name: Path(d) for d in load_config(RunConfig, [run / "config.yaml"]).all_sites}
    for site in sorted(p for p in (run / "sites").iterdir() if (p / "shift").is_dir()):
        folder = ShiftFolder(site)
        local, reference = folder.load_local(), folder.load_reference()
        if reference is None:
            raise SystemExit(f"{site}/shift holds no reference: was fed.secure_stats on?")
        indicators.append(
            measure(
                site.name,
                local.stats,
                reference,
                dice=local.dice,
                volume_bias=local.volume_bias,
                calibration=measure_calibration(data[site.name]) if calibrated else None,
                centre=centre,
            )
        )
    return indicators


def compare(
    scenario: str, run: Path, again: bool = False, calibrated: bool = True
) -> list[dict[str, object]]:
    if again:
        diagnosis = remeasure(run, calibrated)
    else:
        diagnosis = json.loads((run / "diagnosis.json").read_text())
    planted = truth_of(run)
    rows = []
    for site, entry in sorted(diagnosis["sites"].items()):
        named, truth = entry.get("shift", []), planted.get(site, [])
        rows.append(
            {
                "scenario": scenario,
                "site": site,
                "planted": truth,
                "named": named,
                "similarity": {
                    f: entry.get("indicators", {}).get(f"{f}_similarity") for f in FAMILIES
                },
                "population_effect": entry.get("indicators", {}).get("population_effect"),
                "acquisition_offset": largest_offset(entry.get("indicators", {})),
                "calibration": calibration_of(entry.get("indicators", {})),
                "match": sorted(named) == sorted(truth),
                "missed": sorted(set(truth) - set(named)),
                "false_alarm": sorted(set(named) - set(truth)),
            }
        )
    return rows


def largest_offset(indicators: dict[str, object]) -> str | None:
    """The acquisition descriptor farthest from the federation's median, e.g.
    ``"contrast +1.6"`` (None when no offset was reported)."""
    found = {n: indicators.get(k) for n, k in OFFSET.items() if indicators.get(k) is not None}
    if not found:
        return None
    name = max(found, key=lambda n: abs(found[n]))
    return f"{name} {found[name]:+.2f}"


def calibration_of(indicators: dict[str, object]) -> str | None:
    """``"+1.11 / -0.06"``: the site's calibration labels against the reference standard
    (log volume / count ratios; None without calibration cases)."""
    volume, count = indicators.get("calibration_volume"), indicators.get("calibration_count")
    if volume is None or count is None:
        return None
    return f"{volume:+.2f} / {count:+.2f}"


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    return "–" if v is None else f"{v:.2f}"


def table(rows: list[dict[str, object]]) -> str:
    lines = [
        "| scenario | site | planted | named | acq. offset (largest) | acq. sim. | pop. sim. "
        "| lesion load (sd) | ann. sim. | calibration (log vol. / count) | match |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        sim = r["similarity"]
        lines.append(
            f"| {r['scenario']} | {r['site']} | {', '.join(r['planted']) or 'none'} | "
            f"{', '.join(r['named']) or 'none'} | {_fmt(r.get('acquisition_offset'))} | "
            + f"{_fmt(sim['acquisition'])} | {_fmt(sim['population'])} | "
            + f"{_fmt(r.get('population_effect'))} | {_fmt(sim['annotation'])} | "
            + f"{_fmt(r.get('calibration'))} | "
            + f"{'yes' if r['match'] else 'no'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/diagnosis-check"))
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS))
    parser.add_argument(
        "--remeasure",
        action="store_true",
        help="recompute the indicators and verdicts from the sites' shift folders",
    )
    parser.add_argument(
        "--no-calibration",
        action="store_true",
        help="with --remeasure: leave the sites' calibration cases out (the relative rule)",
    )
    parser.add_argument("overrides", nargs="*", help="config overrides for every run")
    args = parser.parse_args()
    rows, seconds = [], {}
    for scenario in args.scenarios:
        run = args.out / scenario
        seconds[scenario] = run_scenario(scenario, run, args.overrides)
        rows += compare(scenario, run, args.remeasure, not args.no_calibration)
    text = table(rows)
    summary = {
        s: {
            "sites": sum(r["scenario"] == s for r in rows),
            "match": sum(r["scenario"] == s and r["match"] for r in rows),
            "missed": sum(r["scenario"] == s and bool(r["missed"]) for r in rows),
            "false_alarm": sum(r["scenario"] == s and bool(r["false_alarm"]) for r in rows),
        }
        for s in args.scenarios
    }
    lines = [
        f"{s}: {v['match']}/{v['sites']} sites as planted, {v['missed']} missed, "
        f"{v['false_alarm']} with a kind not planted"
        for s, v in summary.items()
    ]
    report = text + "\n\n" + "\n".join(lines) + "\n"
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "diagnosis_check.md").write_text(report)
    (args.out / "diagnosis_check.json").write_text(
        json.dumps({"rows": rows, "summary": summary, "seconds": seconds}, indent=1)
    )


if __name__ == "__main__":
    main()
