"""Training losses: VICReg for symmetry embeddings and symmetric InfoNCE for Embed and Emulate."""
