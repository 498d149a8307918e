"""The Pod sandbox ("pause") image, written as an OCI archive that `ctr import` reads.

It holds one file, the static pause binary built from the kubernetes module
(build-realnode.sh), run as an unprivileged user. containerd's pinned sandbox image
names it, so the node never pulls one from a registry.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

from shunter.devcluster.nodeconfig import PAUSE_IMAGE

_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _blob(archive: tarfile.TarFile, data: bytes, media_type: str) -> dict[str, Any]:
    digest = hashlib.sha256(data).hexdigest()
    info = tarfile.TarInfo(f"blobs/sha256/{digest}")
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))
    return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def _layer(binary: Path) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as layer:
        info = tarfile.TarInfo("pause")
        info.size, info.mode = binary.stat().st_size, 0o755
        with binary.open("rb") as data:
            layer.addfile(info, data)
    return out.getvalue()


def pause_image(binary: Path, directory: Path, *, name: str = PAUSE_IMAGE) -> Path:
    """Write the image's OCI archive under directory and return its path."""
    layer = _layer(binary)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(layer).hexdigest()}"]},
    }
    path = directory / "pause.oci.tar"
    with tarfile.open(path, "w") as archive:
        manifest = {
            "schemaVersion": 2,
            "mediaType": _MANIFEST,
            "config": _blob(
                archive, json.dumps(config).encode(), "application/vnd.oci.image.config.v1+json"
            ),
            "layers": [_blob(archive, layer, "application/vnd.oci.image.layer.v1.tar")],
        }
        descriptor = _blob(archive, json.dumps(manifest).encode(), _MANIFEST)
        descriptor["annotations"] = {"io.containerd.image.name": name}
        for file, content in (
            ("oci-layout", {"imageLayoutVersion": "1.0.0"}),
            ("index.json", {"schemaVersion": 2, "manifests": [descriptor]}),
        ):
            data = json.dumps(content).encode()
            info = tarfile.TarInfo(file)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
