"""Events out: CCC polled into typed CloudEvents on Kafka."""
