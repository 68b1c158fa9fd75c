"""Logger plugins: JSON lines, TensorBoard, MLflow and Weights & Biases."""
