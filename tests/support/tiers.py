"""The suite's tiers: a test's directory says what it needs, and that is its markers.

`tests/<tier>/...` is the one place a test's tier is declared; the root conftest's
collection hook gives every test the markers of its tier, so `-m unit` or
`-m "not realnode"` select by what a test needs, and nothing is marked by hand (a file
that marks itself is refused: two places would drift). A file that mixes tiers is split
into one file per tier, each under its tier's directory.

The fixtures a test uses must agree with its directory: a test under tests/unit that
asks for `kubeconfig` would start a control plane in `make test-unit`, so collection
fails and names it instead.

`make test` runs the suite on several pytest-xdist workers, each with its own control
plane, PostgreSQL and kwok nodes (the session fixtures), so a test that restarts its
API server disturbs no other. The root conftest's scheduler sends each worker one
group at a time (`group_of`): what cannot be had twice on one machine keeps its tests
on one worker (the real node: one kubelet and containerd per host), a file that
defines module-scoped fixtures stays on one worker (set up once), and any other test
is a group of its own. The longest groups go first (`longest_first`: by the seconds
their tests took in the last runs on this machine, kept in ~/.cache; by their number
of tests where none is known), so no long test starts last while the other workers
sit idle. (pytest-xdist's own `xdist_group` marks do nothing under pytest 9, whose
node ids xdist can no longer suffix.)
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath


@dataclass(frozen=True)
class Tier:
    markers: tuple[str, ...]
    about: str


# Markers name what a test needs; pyproject.toml registers each with the same words.
TIERS: dict[str, Tier] = {
    "unit": Tier(("unit",), "nothing but the venv: no cluster, no network, no built binary"),
    "tools": Tier(("tools",), "the pinned binaries of `make controlplane` (helm), no service"),
    "postgres": Tier(("postgres",), "a PostgreSQL server"),
    "cluster": Tier(("cluster", "postgres"), "the real API server (and PostgreSQL)"),
    "faults": Tier(("cluster", "postgres"), "the cluster, with processes killed and cut off"),
    "realnode": Tier(("cluster", "postgres", "realnode"), "the real node and its images"),
    "trainer": Tier(("trainer",), "the trainer's torch venv (SHUNTER_TRAINER_PYTHON)"),
}
TIER_MARKERS = frozenset(m for tier in TIERS.values() for m in tier.markers)

# A session fixture and the marker it needs: how a test's needs are read from its fixtures.
NEEDS = {
    "kubeconfig": "cluster",
    "database_url": "postgres",
    "own_postgres": "postgres",
    "lazy_node": "realnode",
}


# Tiers whose tests share something of the host: all of them run on one worker.
HOST_GROUPS = {"realnode": "realnode"}


def group_of(path: PurePath, *, root: PurePath, module_scoped: bool) -> str | None:
    """The worker group of a test file's tests (None: each test on its own): its tier's
    host group, or the file when it defines module-scoped fixtures."""
    tier = tier_of(path, root=root)
    if tier in HOST_GROUPS:
        return HOST_GROUPS[tier]
    return path.relative_to(root).as_posix() if module_scoped else None


def defines_module_fixtures(source: str) -> bool:
    """Whether a test file's source defines a fixture of module scope
    (`@pytest.fixture(scope="module")`)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                if isinstance(decorator, ast.Call) and any(
                    k.arg == "scope" and isinstance(k.value, ast.Constant)
                    and k.value.value == "module" for k in decorator.keywords
                ):  # fmt: skip
                    return True
    return False


def longest_first(groups: dict[str, list[str]], seconds: dict[str, float]) -> list[str]:
    """The groups' names, the longest first: a group lasts the sum of its tests'
    recorded seconds. A test never recorded counts as the median of those that were;
    with nothing recorded at all, each test counts 1 (the biggest group first)."""
    known = sorted(seconds.values())
    guess = known[len(known) // 2] if known else 1.0

    def length(name: str) -> float:
        return sum(seconds.get(test, guess) for test in groups[name])

    return sorted(groups, key=lambda name: -length(name))  # stable: ties keep their order


class TierError(Exception):
    """A test outside every tier directory, marked by hand, or needing more than its tier."""


def tier_of(path: PurePath, *, root: PurePath) -> str:
    """The tier of a test file: the first directory under tests/."""
    parts = path.relative_to(root).parts
    if len(parts) < 2 or parts[0] not in TIERS:
        raise TierError(
            f"{path.relative_to(root)}: not under a tier directory ({', '.join(TIERS)})"
        )
    return parts[0]


def markers_for(
    path: PurePath, *, root: PurePath, fixtures: Iterable[str], marked: Iterable[str]
) -> tuple[str, ...]:
    """The markers a test gets from its directory, after checking it against them."""
    tier = tier_of(path, root=root)
    where = path.relative_to(root)
    by_hand = sorted(set(marked) & TIER_MARKERS)
    if by_hand:
        raise TierError(f"{where}: marks {by_hand} by hand; its directory decides its tier")
    given = TIERS[tier].markers
    missing = sorted({NEEDS[f] for f in fixtures if f in NEEDS} - set(given))
    if missing:
        raise TierError(f"{where}: its fixtures need {missing}, beyond the {tier!r} tier")
    return given
