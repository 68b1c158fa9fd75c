"""Task plugins: modular addition, modular arithmetic, sparse parity, and the classification losses they share."""
