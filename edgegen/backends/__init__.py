"""Backends behind ``edgegen.load``: one explicit table (name -> module, class), not import side effects."""
BACKENDS: dict[str, tuple[str, str]] = {
    "native": ("edgegen.backends.native", "NativeModel"),
    "onnxruntime": ("edgegen.backends.onnxruntime", "OnnxModel"),
}
