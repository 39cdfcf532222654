"""Our remembered-hash partitioner chooses what Kafka's default partitioner chooses."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given
from hypothesis import strategies as st

from service.kafka.producer import partition_for


@given(key=st.binary(max_size=64), count=st.integers(min_value=1, max_value=64))
def test_partition_for_matches_the_default_partitioner(key: bytes, count: int) -> None:
    partitions = list(range(count))
    expected = DefaultPartitioner()(key, partitions, partitions)
    assert partition_for(key, partitions) == expected
    assert partition_for(key, partitions) == expected  # and again, from the cache
