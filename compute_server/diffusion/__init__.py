"""View synthesis with diffusion models and the iterative-denoising prior."""
