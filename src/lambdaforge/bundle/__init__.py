"""Container images: what builds them (`build`: slim lists, lock filter, build contexts, image ENV) and
what measures them (`measure`: the runtime payload against a budget).

The Dockerfiles under packaging/ and `lambdaforge package` use the same slimming list
(packaging/<function>/slim.txt), so what the payload report measures is what the image holds.

    python -m lambdaforge.bundle slim TARGET SLIM_TXT       # in the Dockerfile, after pip install
    python -m lambdaforge.bundle lock REQUIREMENTS SLIM_TXT # after pip-compile (make lock)

Stdlib only at import: the Dockerfiles run the CLI before anything else is installed.
"""
