"""ccc-bridge: Alibaba Cloud Call Center (2017-07-05) to Kafka."""
