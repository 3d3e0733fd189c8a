"""Kubeflow Pipelines orchestration: compile, submit to a cluster, run locally.

``compile`` writes the IR YAML, ``submit`` uploads and starts runs through
``kfp.Client``, ``local`` runs the training pipeline through ``kfp.local`` and
``docker`` adapts its DockerRunner to podman.
"""
