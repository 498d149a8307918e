#!/usr/bin/env bash
# Prints the python of a venv with the trainer's dependencies, creating it on first use.
#
#   hack/trainer-venv.sh          the test venv: the image's packages plus
#                                 trainer-image/requirements-test.txt (transformers,
#                                 lightning: the frameworks whose callbacks
#                                 shunter_trainer ships); the tests run this one
#   hack/trainer-venv.sh --image  exactly trainer-image/requirements.txt (torch, ~5 GB
#                                 with its CUDA libraries); the local trainer image
#                                 copies its packages (hack/shunter/devcluster/images.py)
#
# Both live under ~/.cache/shunter, keyed by the hash of their requirements, so CI
# reuses them until the pins change. The test venv does not install torch again: it
# sees the image venv's packages through a .pth file and installs only the extras, with
# requirements.txt as a constraint. So changing the extras costs a minute, not a torch
# download, and the image never gets them. The operator and API venv never gets torch.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
req=$repo/trainer-image/requirements.txt
extras=$repo/trainer-image/requirements-test.txt
key=$(sha256sum "$req" | cut -c1-12)
venv=${SHUNTER_TRAINER_VENV:-$HOME/.cache/shunter/trainer-venv-$key}
if [ ! -x "$venv/bin/python" ] || [ ! -f "$venv/.installed" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q -r "$req" >&2
  touch "$venv/.installed"
fi
if [ "${1:-}" = --image ]; then
  echo "$venv/bin/python"
  exit 0
fi
test_key=$(cat "$req" "$extras" | sha256sum | cut -c1-12)
test_venv=$HOME/.cache/shunter/trainer-test-venv-$test_key
if [ ! -x "$test_venv/bin/python" ] || [ ! -f "$test_venv/.installed" ]; then
  rm -rf "$test_venv"
  python3 -m venv "$test_venv" >&2
  base_site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  test_site=$("$test_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
  echo "$base_site" >"$test_site/shunter-trainer-image-venv.pth"
  "$test_venv/bin/pip" install -q --upgrade pip >&2
  "$test_venv/bin/pip" install -q -r "$extras" -c "$req" >&2
  touch "$test_venv/.installed"
fi
echo "$test_venv/bin/python"
