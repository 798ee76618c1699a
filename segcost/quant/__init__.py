"""int8 quantization: calibration sources, onnxruntime static quantization, accuracy comparison."""
