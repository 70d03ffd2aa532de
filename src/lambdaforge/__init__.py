"""lambdaforge: from a PyTorch recipe to an INT8 ONNX model behind a Lambda HTTP API, kept fresh.

The package root imports nothing heavy: the inference image imports `lambdaforge.runtime`
without torch, and the zip functions import `lambdaforge.pipeline` without onnxruntime.
"""

__version__ = "0.1.0"
