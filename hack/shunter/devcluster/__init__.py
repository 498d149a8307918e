"""A local development stack: a real Kubernetes control plane plus PostgreSQL.

The control plane is built from the published Go modules (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kubectl) and kwok simulates GPU nodes and
pod lifecycles, so the whole system and its e2e suite run on one machine without
Docker. Nothing here is imported by the operator or the API.
"""
