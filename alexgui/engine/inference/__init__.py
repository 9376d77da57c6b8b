"""Using a trained model: predictors and model sources, ONNX format, export and runtime, parity, retrieval."""
