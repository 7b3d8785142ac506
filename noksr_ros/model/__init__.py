"""The NoKSR network in pure PyTorch: serialization, backbone, neighbours, heads."""
