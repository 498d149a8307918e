#!/usr/bin/env bash
# Prints the python of a venv with the trainer's dependencies (torch, ~5 GB with its
# CUDA libraries), creating it on first use. It lives under ~/.cache, keyed by the hash
# of trainer-image/requirements.txt, so CI reuses it until the pins change; the
# operator and API venv never gets torch.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
req=$repo/trainer-image/requirements.txt
key=$(sha256sum "$req" | cut -c1-12)
venv=${SHUNTER_TRAINER_VENV:-$HOME/.cache/shunter/trainer-venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$req" >&2
  touch "$venv/.installed"
fi
echo "$venv/bin/python"
