"""The model: the layer registry and the builder (layers -> nn.Sequential with shape inference)."""
