"""Classical pansharpening methods (numpy only, no torch)."""
