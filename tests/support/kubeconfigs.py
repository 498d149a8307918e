"""Kubeconfigs for one test: the session's cluster with another user or cluster settings,
and a tiny exec credential plugin (a real process printing an ExecCredential)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import yaml

from shunter.kube import Kube, connect

EXEC_V1 = "client.authentication.k8s.io/v1"

# Prints an ExecCredential from what its environment names, and logs each run (with the
# request it was given) to PLUGIN_LOG, one line a run.
_PLUGIN = """\
import datetime, json, os, pathlib
pathlib.Path(os.environ["PLUGIN_LOG"]).open("a").write(os.environ["KUBERNETES_EXEC_INFO"] + "\\n")
status = {}
if os.environ.get("PLUGIN_TOKEN_FILE"):
    status["token"] = pathlib.Path(os.environ["PLUGIN_TOKEN_FILE"]).read_text().strip()
if os.environ.get("PLUGIN_CERT"):
    status["clientCertificateData"] = pathlib.Path(os.environ["PLUGIN_CERT"]).read_text()
    status["clientKeyData"] = pathlib.Path(os.environ["PLUGIN_KEY"]).read_text()
if os.environ.get("PLUGIN_EXPIRES_IN"):
    at = datetime.datetime.now(datetime.UTC)
    at += datetime.timedelta(seconds=float(os.environ["PLUGIN_EXPIRES_IN"]))
    status["expirationTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
version = os.environ.get("PLUGIN_API_VERSION", "client.authentication.k8s.io/v1")
print(json.dumps({"apiVersion": version, "kind": "ExecCredential", "status": status}))
"""


def exec_plugin(directory: Path) -> Path:
    """The plugin as an executable file under directory."""
    path = directory / "credential-plugin"
    path.write_text(f"#!{sys.executable}\n{_PLUGIN}")
    path.chmod(0o755)
    return path


def exec_user(plugin: Path, **env: str) -> dict[str, Any]:
    """A kubeconfig user running plugin with PLUGIN_* settings (env)."""
    return {
        "exec": {
            "command": str(plugin),
            "apiVersion": EXEC_V1,
            "interactiveMode": "Never",
            "env": [{"name": k, "value": v} for k, v in env.items()],
        }
    }


def plugin_runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def kubeconfig_as(base: Path, out: Path, *, user: dict[str, Any], **cluster: Any) -> Path:
    """A copy of base whose current context has `user` and the cluster settings given
    (server="https://...", proxy-url="...": keyword names with _ for -)."""
    config = yaml.safe_load(base.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    entry = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    entry["cluster"].update({k.replace("_", "-"): v for k, v in cluster.items()})
    config["users"] = [{"name": "test-user", "user": user}]
    context["context"]["user"] = "test-user"
    out.write_text(yaml.safe_dump(config))
    out.chmod(0o600)
    return out


def admin_user(kubeconfig: Path) -> dict[str, Any]:
    """The kubeconfig's first user entry (the session's admin: a client certificate)."""
    config = yaml.safe_load(kubeconfig.read_text())
    return dict(config["users"][0]["user"])


def kube_as(base: Path, out: Path, *, user: dict[str, Any]) -> Kube:
    """A client of base's cluster as `user` (a kubeconfig user entry), written to out."""
    return Kube(connect(kubeconfig_as(base, out, user=user)))


def write_atomically(path: Path, data: bytes) -> None:
    """Replace path's content in one step (as the kubelet and cert-manager do)."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data)
    os.replace(fresh, path)
