"""The gRPC edge: servicers convert between protobuf and domain objects and delegate."""
