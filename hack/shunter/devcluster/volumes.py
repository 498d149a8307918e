"""A checkpoint volume on the real node: a `local` PersistentVolume over a host
directory, and the claim bound to it, so a checkpoint outlives the trainer Pod.

No provisioner runs here: the PersistentVolume is created by hand (by the demo or a
test) with node affinity to the node that holds the directory, and the claim names it.
"""

from __future__ import annotations

from typing import Any

STORAGE_CLASS = "shunter-local"


def checkpoint_volume(
    claim: str, namespace: str, *, path: str, node: str, size: str = "1Gi"
) -> list[dict[str, Any]]:
    """The PersistentVolume (named after namespace and claim) and its claim."""
    volume = f"{namespace}-{claim}"[:253]
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume, "labels": {"shunter.dev/checkpoints": "true"}},
            "spec": {
                "capacity": {"storage": size},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": STORAGE_CLASS,
                "local": {"path": path},
                "claimRef": {"namespace": namespace, "name": claim},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {
                                        "key": "kubernetes.io/hostname",
                                        "operator": "In",
                                        "values": [node],
                                    }
                                ]
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            # Offered to training jobs: only claims with this label may be mounted
            # (shunter.domain.claims).
            "metadata": {
                "name": claim,
                "namespace": namespace,
                "labels": {"shunter.dev/checkpoints": "true"},
            },
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": STORAGE_CLASS,
                "volumeName": volume,
                "resources": {"requests": {"storage": size}},
            },
        },
    ]
