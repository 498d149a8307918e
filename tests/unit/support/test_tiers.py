"""The tiers by directory: each test's markers come from where it is, nowhere else."""

from __future__ import annotations

import re
import socket
from pathlib import Path, PurePath

import pytest

from tests.support.tiers import (
    TIER_MARKERS,
    TIERS,
    TierError,
    longest_first,
    markers_for,
    tier_of,
)

ROOT = PurePath("/repo/tests")
TESTS = Path(__file__).resolve().parents[2]


def test_the_first_directory_is_the_tier():
    assert tier_of(ROOT / "cluster/operator/test_x_e2e.py", root=ROOT) == "cluster"
    assert markers_for(ROOT / "realnode/test_x.py", root=ROOT, fixtures=[], marked=[]) == (
        "cluster",
        "postgres",
        "realnode",
    )


@pytest.mark.parametrize("path", ["api/test_positions.py", "test_loose.py"])
def test_a_test_outside_the_tier_directories_is_refused(path: str):
    with pytest.raises(TierError, match="not under a tier directory"):
        markers_for(ROOT / path, root=ROOT, fixtures=[], marked=[])


def test_a_tier_marked_by_hand_is_refused():
    with pytest.raises(TierError, match=r"marks \['cluster'\] by hand"):
        markers_for(ROOT / "cluster/test_x.py", root=ROOT, fixtures=[], marked=["cluster"])
    # Other markers (a timeout, parametrize) are the file's own business.
    assert markers_for(ROOT / "unit/test_x.py", root=ROOT, fixtures=[], marked=["timeout"])


@pytest.mark.parametrize(
    ("path", "fixture", "need"),
    [
        ("unit/test_x.py", "kubeconfig", "cluster"),
        ("unit/test_x.py", "database_url", "postgres"),
        ("postgres/test_x.py", "kubeconfig", "cluster"),
        ("cluster/test_x.py", "lazy_node", "realnode"),
    ],
)
def test_a_fixture_beyond_the_tier_is_refused(path: str, fixture: str, need: str):
    with pytest.raises(TierError, match=f"need \\['{need}'\\]"):
        markers_for(ROOT / path, root=ROOT, fixtures=[fixture, "tmp_path"], marked=[])


def test_every_tier_marker_is_registered():
    text = (TESTS.parent / "pyproject.toml").read_text()
    registered = set(re.findall(r'^\s*"([a-z]+): ', text, flags=re.M))
    assert registered >= TIER_MARKERS


def test_no_test_file_writes_a_tier_marker_and_each_sits_in_a_tier():
    marks = "|".join(sorted(TIER_MARKERS))
    by_hand = re.compile(rf"pytest\.mark\.({marks})\b")
    found = [
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("*.py")
        if by_hand.search(p.read_text()) and p.parent.name != "support"
    ]
    assert found == []
    loose = [
        str(p.relative_to(TESTS))
        for p in TESTS.rglob("test_*.py")
        if p.relative_to(TESTS).parts[0] not in TIERS
    ]
    assert loose == []


def test_the_network_is_refused_but_the_loopback_is_not():
    with pytest.raises(OSError, match="no network"):
        socket.getaddrinfo("example.com", 443)
    with socket.socket() as sock, pytest.raises(OSError, match="no network"):
        sock.connect(("192.0.2.1", 80))
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", 9)) != 0  # closed, but asked


def test_the_real_node_keeps_its_tests_on_one_worker_and_a_module_fixture_its_file():
    from tests.support.tiers import group_of

    assert group_of(ROOT / "realnode/test_a.py", root=ROOT, module_scoped=False) == "realnode"
    assert group_of(ROOT / "realnode/test_b.py", root=ROOT, module_scoped=True) == "realnode"
    assert group_of(ROOT / "cluster/ui/test_browser.py", root=ROOT, module_scoped=True) == (
        "cluster/ui/test_browser.py"
    )
    assert group_of(ROOT / "cluster/api/test_x.py", root=ROOT, module_scoped=False) is None


def test_a_module_fixture_is_found_in_the_source_of_its_file():
    from tests.support.tiers import defines_module_fixtures

    module = '@pytest.fixture(scope="module")\ndef browser():\n    yield 1\n'
    assert defines_module_fixtures(module)
    assert not defines_module_fixtures(module.replace('"module"', '"session"'))
    assert not defines_module_fixtures("@pytest.fixture\ndef page():\n    return 1\n")
    # The suite's own files, as the scheduler reads them.
    assert defines_module_fixtures((TESTS / "cluster/ui/test_browser.py").read_text())
    assert not defines_module_fixtures((TESTS / "cluster/api/test_live.py").read_text())


def test_the_longest_groups_go_first_by_their_recorded_seconds():
    groups = {"a": ["a1", "a2", "a3"], "slow": ["s"], "b": ["b1"], "new": ["n1", "n2"]}
    seconds = {"a1": 1.0, "a2": 1.0, "a3": 2.0, "s": 150.0, "b1": 3.0}
    # a: 4 s; slow: 150 s; b: 3 s; new: two unknown tests at the median (2 s) each, 4 s
    assert longest_first(groups, seconds) == ["slow", "a", "new", "b"]


def test_with_nothing_recorded_the_biggest_group_goes_first():
    groups = {"one": ["x"], "three": ["y1", "y2", "y3"], "two": ["z1", "z2"]}
    assert longest_first(groups, {}) == ["three", "two", "one"]
