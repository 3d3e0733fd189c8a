"""crispops: the CRISP-DM cycle as Kubeflow pipelines over a Feast feature store,
served by BentoML."""

__version__ = "0.1.0"
