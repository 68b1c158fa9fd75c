"""Model plugins: the quadratic network (with its fused C step), the ReLU MLP, the transformer, kernel regression."""
