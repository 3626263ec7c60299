"""Checking a Core ML model on any OS: ``evaluator`` runs a saved model operation by operation with numpy (its op
families in ``mil``, ``nn`` and ``nms``, shared kernels in ``kernels``), and ``coreml`` compares it with PyTorch
(``blazeconv verify``)."""
