"""The real node's configuration files and the image build's base mapping (pure)."""

from __future__ import annotations

import tomllib
from pathlib import Path

from shunter.devcluster import images, nodeconfig

PATHS = nodeconfig.RuntimePaths(run=Path("/run/x"), cache=Path("/c"), bin=Path("/b"))


def test_containerd_keeps_to_its_own_paths_and_this_machines_limits():
    config = tomllib.loads(nodeconfig.containerd_config(PATHS))
    assert (config["root"], config["state"]) == ("/c/containerd", "/run/x/containerd")
    cri = config["plugins"]["io.containerd.cri.v1.runtime"]
    assert cri["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert cri["netns_mounts_under_state_dir"] is True
    runc = cri["containerd"]["runtimes"]["runc"]["options"]
    assert (runc["BinaryName"], runc["Root"]) == ("/b/runc", "/run/x/runc")
    assert cri["cni"]["bin_dirs"] == ["/b/cni"]
    assert config["plugins"]["io.containerd.shim.v1.manager"]["socket_dir"] == "/run/x/s"
    sandbox = config["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"]
    assert sandbox == nodeconfig.PAUSE_IMAGE
    assert "io.containerd.nri.v1.nri" in config["disabled_plugins"]


def test_pod_network_stays_on_this_machine():
    [bridge] = nodeconfig.cni_config(PATHS)["plugins"]
    assert bridge["ipMasq"] is False
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.0.0/24", "gateway": "10.244.0.1"}]]
    assert bridge["ipam"]["dataDir"] == "/run/x/cni/ipam"


def test_the_project_dockerfiles_bases_are_found_for_mapping():
    assert images.external_bases(images.REPO / "Dockerfile") == ["python:3.11-slim"]
    [trainer_base] = images.external_bases(images.REPO / "trainer-image/Dockerfile")
    assert trainer_base.startswith("pytorch/pytorch:")


def test_a_stage_named_in_from_is_not_an_external_base(tmp_path: Path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM --platform=linux/amd64 a:1 AS build\nFROM build\nFROM b:2\n")
    assert images.external_bases(dockerfile) == ["a:1", "b:2"]


def test_image_names_follow_their_inputs():
    first, again = images.names(), images.names()
    assert first == again
    assert set(first) == {"debian-python", "trainer-base", "shunter", "trainer"}
    assert all(name.startswith("shunter.local/") for name in first.values())
