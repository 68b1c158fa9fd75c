"""Training-method plugins: optimizers (with Adam's fused C update), regularizers, Grokfast, OrthoGrad, presets,
and the benchmark's methods with the benchmark file they register."""
