"""Typed wrappers over aiokafka: connection options, topic administration."""
