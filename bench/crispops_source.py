"""The crispops service as the working tree builds it, for ``bench serving --crispops source``.

A Bento carries a copy of the crispops package from the day it was built, so
``bentoml serve <bento tag>`` measures that copy. This entry module builds the same
service from the installed (editable) crispops for the champion's model tag, read
from ``BENCH_MODEL_TAG`` / ``BENCH_BENTO_TAG``; the model comes from BentoML's store
(``BENTOML_HOME``), as in the Bento. Served as
``python -m bentoml serve bench.crispops_source:CrispopsModel`` from the project root.
"""

import os

from crispops.serving.service import make_service

CrispopsModel = make_service(
    os.environ["BENCH_MODEL_TAG"], bento_tag=os.environ.get("BENCH_BENTO_TAG") or None
)
