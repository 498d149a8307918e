"""Shunter's domain: the rules the operator and the API share (pure, no I/O).

What a TrainingJob and a TrainingQueue are (model, queues), where a job's Pods may go
(nodes, capacity), the admission order and verdicts (admission), what a job's Pod and
claim look like (podspec, claims), and which namespaces are served (scope). The
operator acts on these rules; the API answers from them; neither writes its own copy.
The API may import this package and shunter.kube, and nothing of shunter.operator
(pyproject's import contracts).
"""
