"""Kubeflow Pipelines orchestration: compile, submit to a cluster, run locally.

``compile`` writes the IR YAML, ``submit`` uploads and starts runs through
``kfp.Client``, ``local`` runs the training pipeline through ``kfp.local`` and
``docker`` adapts its DockerRunner to podman, ``retrain`` is the child process the
monitor starts to retrain, and ``cycle`` runs the whole loop once on the demo
(``crispops demo-cycle``: serve, traffic, labels back, monitor, act).
"""
