"""Context propagation across process boundaries."""
