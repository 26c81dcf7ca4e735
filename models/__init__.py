"""Clinical scores and the deterioration model, below the alert policy and above the core.

``news2`` and ``qsofa`` (with ``recorded``, their rounding) are pure functions;
``features`` builds the model inputs; ``registry`` finds and verifies a model version;
``session`` wraps ONNX Runtime; ``runtime`` is the stateful deterioration model; ``fusion``
combines its risk with an imaging finding. Import from the modules: the package
re-exports nothing, so importing a clinical score never loads NumPy or ONNX Runtime.
"""
