"""`make images`: the project's images built here by buildkit, into the node's containerd.

Four images, each named by the hash of its inputs, so a rebuild happens only when an
input changed (and buildkit's own cache makes a partial rebuild cheap):

    shunter.local/debian-python:KEY  Debian bookworm root filesystem (mmdebstrap, from
                                     this machine's apt sources): python3.11 and pip
    shunter.local/trainer-base:KEY   + the trainer venv's torch and numpy
    shunter.local/shunter:KEY        the repo's Dockerfile (operator and API)
    shunter.local/trainer:KEY        trainer-image/Dockerfile

The two project Dockerfiles are built unchanged: their public base images (FROM
lines) are mapped to the local ones with buildkit named contexts, so they stay
correct for real registries. Why the trainer's torch comes from the venv
(hack/trainer-venv.sh) rather than a fresh install: it is the same pinned torch the
CPU tests run, with the CUDA libraries the production image has too; PyPI's Linux
wheels bring them anyway (about 4 GB), and the venv is already on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shunter.devcluster.nodeconfig import PAUSE_IMAGE
from shunter.devcluster.runtime import Runtime, RuntimeUnavailable

REPO = Path(__file__).resolve().parents[3]
HACK = REPO / "hack/images"
PREFIX = "shunter.local"
# What the operator image copies (the Dockerfile's COPY sources).
OPERATOR_INPUTS = (
    "Dockerfile",
    ".dockerignore",
    "pyproject.toml",
    "README.md",
    "operator",
    "api",
    "hack/shunter",
)
DEBIAN_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
EXTRA_CAS = Path("/usr/local/share/ca-certificates")


@dataclass(frozen=True)
class Images:
    operator: str
    trainer: str


def _digest(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:12]


def _files(root: Path, names: tuple[str, ...]) -> list[Path]:
    found = []
    for name in names:
        path = root / name
        if path.is_dir():
            found += [
                p
                for p in path.rglob("*")
                if p.is_file()
                and "__pycache__" not in p.parts
                and not p.name.endswith(".pyc")
                and ".egg-info" not in str(p)
            ]
        elif path.is_file():
            found.append(path)
    return sorted(found)


def _tree_digest(root: Path, names: tuple[str, ...], *extra: str) -> str:
    parts: list[bytes | str] = list(extra)
    for path in _files(root, names):
        parts += [str(path.relative_to(root)), path.read_bytes()]
    return _digest(*parts)


def _extra_cas() -> list[Path]:
    """Certificates this machine trusts beyond Debian's (an intercepting proxy's, say):
    the build's pip must trust them too."""
    return sorted(EXTRA_CAS.glob("*.crt")) if EXTRA_CAS.is_dir() else []


def _base_key() -> str:
    sources = HOST_SOURCES.read_bytes() if HOST_SOURCES.exists() else b""
    cas = [p.read_bytes() for p in _extra_cas()]
    return _digest(
        (HACK / "base.Dockerfile").read_bytes(), " ".join(DEBIAN_PACKAGES), sources, *cas
    )


def trainer_venv() -> Path:
    """The image's trainer venv: exactly requirements.txt (hack/trainer-venv.sh --image)."""
    out = subprocess.run(
        [str(REPO / "hack/trainer-venv.sh"), "--image"], capture_output=True, text=True, check=True
    )
    return Path(out.stdout.strip()).parents[1]


def _site_packages(venv: Path) -> Path:
    return next(venv.glob("lib/python3*/site-packages"))


def names() -> dict[str, str]:
    """Every image's name, from the hash of its inputs (nothing is built)."""
    base = _base_key()
    requirements = (REPO / "trainer-image/requirements.txt").read_bytes()
    trainer_base = _digest(base, (HACK / "trainer-base.Dockerfile").read_bytes(), requirements)
    return {
        "debian-python": f"{PREFIX}/debian-python:{base}",
        "trainer-base": f"{PREFIX}/trainer-base:{trainer_base}",
        "shunter": f"{PREFIX}/shunter:{_tree_digest(REPO, OPERATOR_INPUTS, base)}",
        "trainer": f"{PREFIX}/trainer:{_tree_digest(REPO / 'trainer-image', ('.',), trainer_base)}",
    }


def external_bases(dockerfile: Path) -> list[str]:
    """The images a Dockerfile's FROM lines name (not its own stages)."""
    stages: set[str] = set()
    bases: list[str] = []
    for line in dockerfile.read_text().splitlines():
        match = re.match(r"^\s*FROM\s+(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
        if not match:
            continue
        if match.group(1) not in stages and match.group(1) not in bases:
            bases.append(match.group(1))
        if match.group(2):
            stages.add(match.group(2))
    return bases


def _log(message: str) -> None:
    print(f"images: {message}", file=sys.stderr, flush=True)


class Builder:
    def __init__(self, runtime: Runtime, cache: Path) -> None:
        self.runtime = runtime
        self.cache = cache

    def rootfs(self, key: str) -> Path:
        """The Debian root filesystem tarball, made once per key."""
        out = self.cache / f"debian-rootfs-{key}" / "rootfs.tar"
        if out.exists():
            return out
        shutil.rmtree(out.parent, ignore_errors=True)
        out.parent.mkdir(parents=True)
        hooks = ['--customize-hook=rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED']
        if _extra_cas():
            hooks += [
                "--customize-hook=copy-in "
                + " ".join(map(str, _extra_cas()))
                + " /usr/local/share/ca-certificates/",
                '--customize-hook=chroot "$1" update-ca-certificates',
            ]
        argv = [
            "mmdebstrap",
            "--variant=minbase",
            "--include=" + ",".join(DEBIAN_PACKAGES),
            '--aptopt=Acquire::Languages "none"',
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("doc", "man", "info")),
            *hooks,
            "bookworm",
            str(out) + ".tmp",
            *([str(HOST_SOURCES)] if HOST_SOURCES.exists() else []),
        ]
        _log("making the Debian root filesystem (mmdebstrap)")
        subprocess.run(["nice", "-n", "10", *argv], check=True)
        os.replace(str(out) + ".tmp", out)
        return out

    def build(
        self,
        name: str,
        *,
        context: Path,
        dockerfile: Path,
        contexts: dict[str, str],
        locals_: dict[str, Path] | None = None,
    ) -> None:
        if self.runtime.has_image(name):
            _log(f"{name} is up to date")
            return
        _log(f"building {name}")
        start = time.monotonic()
        argv = [
            str(self.runtime.bin_dir / "buildctl"),
            f"--addr=unix://{self.runtime.buildkit_socket}",
            "build",
            "--progress=plain",
            "--frontend=dockerfile.v0",
            f"--local=context={context}",
            f"--local=dockerfile={dockerfile.parent}",
            f"--opt=filename={dockerfile.name}",
            "--opt=image-resolve-mode=local",
            *(f"--opt=context:{k}={v}" for k, v in contexts.items()),
            *(f"--local={k}={v}" for k, v in (locals_ or {}).items()),
            # zstd: much faster than gzip for the trainer base's 4 GB layer on 2 cores.
            f"--output=type=image,name={name},unpack=true,compression=zstd",
        ]
        result = subprocess.run(["nice", "-n", "10", *argv], env=self.runtime.env())
        if result.returncode:
            raise RuntimeUnavailable(f"building {name} failed (buildctl exit {result.returncode})")
        _log(f"{name} built in {time.monotonic() - start:.0f}s")


def ensure(runtime: Runtime, cache: Path) -> Images:
    """Build whatever is missing; return the operator and trainer image names."""
    want = names()
    started = not runtime.running()
    try:
        runtime.start()
        if all(runtime.has_image(n) for n in want.values()):
            _log("up to date: " + ", ".join(want.values()))
            return Images(operator=want["shunter"], trainer=want["trainer"])
        runtime.start_buildkitd()
        builder = Builder(runtime, cache)
        base, trainer_base = want["debian-python"], want["trainer-base"]
        if not runtime.has_image(base):
            rootfs = builder.rootfs(base.rsplit(":", 1)[1])
            builder.build(
                base,
                context=rootfs.parent,
                dockerfile=HACK / "base.Dockerfile",
                contexts={},
                locals_={},
            )
        if not runtime.has_image(trainer_base):
            builder.build(
                trainer_base,
                context=HACK,
                dockerfile=HACK / "trainer-base.Dockerfile",
                contexts={"base": f"docker-image://{base}", "venv": "local:venv"},
                locals_={"venv": _site_packages(trainer_venv())},
            )
        for image, context, base_image in (
            (want["shunter"], REPO, base),
            (want["trainer"], REPO / "trainer-image", trainer_base),
        ):
            dockerfile = context / "Dockerfile"
            mapped = dict.fromkeys(external_bases(dockerfile), f"docker-image://{base_image}")
            builder.build(image, context=context, dockerfile=dockerfile, contexts=mapped)
        _prune(runtime, keep=set(want.values()))
    finally:
        runtime.stop_buildkitd()
        if started and not runtime.owned():  # a node that came up meanwhile keeps it
            runtime.stop()
    return Images(operator=want["shunter"], trainer=want["trainer"])


def _prune(runtime: Runtime, *, keep: set[str]) -> None:
    """Older builds of the same images (their inputs changed), and images left without
    a name, are dropped with their content: this containerd holds only our images."""
    repositories = {name.rsplit(":", 1)[0] for name in keep}
    listed = json.loads(runtime.crictl("images", "-o", "json").stdout).get("images") or []
    for image in listed:
        tags = set(image.get("repoTags") or [])
        if tags & (keep | {PAUSE_IMAGE}):
            continue
        if not tags or any(t.rsplit(":", 1)[0] in repositories for t in tags):
            runtime.crictl("rmi", image["id"], check=False)
