"""Face perception: detect, quality, align, liveness, embed, and the 1:N gallery."""
