"""A service for test_process.py: prints what it was started with, then ends or
waits for a signal (--hang; --ignore-term: not SIGTERM; --dump-tasks: SIGUSR1 writes
its asyncio tasks, as the operator does)."""

import os
import signal
import sys

import kubernetes.config
import kubernetes_asyncio.config

print("kubeconfig", kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
print("kubeconfig", kubernetes.config.KUBE_CONFIG_DEFAULT_LOCATION)
print("kubeconfig", kubernetes_asyncio.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION)
print("kubeconfig", kubernetes_asyncio.config.KUBE_CONFIG_DEFAULT_LOCATION)
print("env", os.environ.get("SHUNTER_ECHO"), os.environ["PYTHONASYNCIODEBUG"])
print("argv", sys.argv[1:], __name__)
print("to stderr", file=sys.stderr)
if "--ignore-term" in sys.argv:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--dump-tasks" in sys.argv:
    from shunter.operator.main import dump_tasks

    signal.signal(signal.SIGUSR1, dump_tasks)
if "--hang" in sys.argv:
    print("hanging")
    while True:  # a handled signal ends one pause, not the wait
        signal.pause()
