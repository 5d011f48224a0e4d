"""Code shared by every Solstice CI part: the workflow model, messages,
configuration, logging, secret masking and the generated gRPC stubs."""
