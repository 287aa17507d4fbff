"""The ServerApp's own enrolment check (``fed.enrolled_sites``): only nodes that the
coordinator enrolled, answering with their enrolled site name, take part."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedshift.errors import ConfigError
from fedshift.fl.grid import SiteInfo
from fedshift.fl.server import enrolled_only
from fedshift.policy import enrolment_refusals

ENROLLED = {"site0": 11, "site1": 12, "site2": None}  # site2: enrolled before, id unknown


def test_each_way_of_not_matching_the_enrolment_is_refused() -> None:
    reported = {11: "site0", 12: "site0", 13: "site2", 14: "intruder", 15: "site1"}
    refused = enrolment_refusals(reported, ENROLLED)
    assert set(refused) == {12, 14, 15}
    assert "enrolled as node 11" in refused[12]  # a second node claiming site0
    assert "not enrolled" in refused[14]
    assert "enrolled as node 12, not 15" in refused[15]
    # where the id is unknown, the name may be claimed once
    assert enrolment_refusals({13: "site2", 16: "site2"}, ENROLLED) == {
        16: "site 'site2' already answered as node 13"
    }
    assert enrolment_refusals({11: "site0", 12: "site1"}, ENROLLED) == {}


def test_the_coordinator_leaves_refused_nodes_out(tmp_path: Path) -> None:
    path = tmp_path / "enrolled.json"
    path.write_text(json.dumps(ENROLLED))
    sites = {n: SiteInfo(n, name, "A", True, 4, 4) for n, name in {11: "site0", 14: "x"}.items()}
    assert list(enrolled_only(sites, str(path))) == [11]
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="fed.enrolled_sites"):
        enrolled_only(sites, str(path))
    with pytest.raises(ConfigError, match="cannot read"):
        enrolled_only(sites, str(tmp_path / "missing.json"))
