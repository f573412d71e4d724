"""Downstream products computed from fused (or any) multispectral images."""
