"""Backends behind ``edgegen.load``: one explicit table (name -> module, class), not import side effects."""
BACKENDS: dict[str, tuple[str, str]] = {
    "native": ("edgegen.backends.native", "NativeModel"),
    "llama.cpp": ("edgegen.backends.llamacpp", "LlamaCppModel"),
    "onnxruntime": ("edgegen.backends.onnxruntime", "OnnxModel"),
}
