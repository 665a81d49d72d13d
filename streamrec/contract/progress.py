"""How far the worker's exactly-once guard is behind the end of each partition: what a
graceful stop waits for, and the lag the worker reports.

The end of each partition is read from a fetch response's high watermark: the embedded
broker (Tansu 0.6) answers ListOffsets with the start of the last batch + 1 when that batch
held several records, so `end_offsets` alone would call a backlog drained too early.
The applied position is the guard in Redis (`applied_offsets`; every record moves it:
applied, dead-lettered, duplicate or epoch), so it is the truth whatever the consumer
group has committed.
"""

from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from .settings import Settings


async def partition_ends(settings: Settings, topics: list[str]) -> dict[str, int]:
    """"topic:partition" -> offset after its last record."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for topic in topics
                      for p in sorted(consumer.partitions_for_topic(topic) or ())]
        if not partitions:
            return {}
        consumer.assign(partitions)
        listed = await consumer.end_offsets(partitions)
        for tp in partitions:  # a fetch near the (too low) listed end reports the true one
            consumer.seek(tp, max(listed[tp] - 1, 0))
        await consumer.getmany(*partitions, timeout_ms=500)
        return {f"{tp.topic}:{tp.partition}": max(consumer.highwater(tp) or 0, listed[tp])
                for tp in partitions}
    finally:
        await consumer.stop()


def records_behind(ends: Mapping[str, int], applied: Mapping[str, int]) -> dict[str, int]:
    """Records per partition after the last one the guard has applied (`applied`: the
    guard's offset per "topic:partition"; a partition it has never seen is behind by all)."""
    return {source: end - (applied[source] + 1 if source in applied else 0)
            for source, end in ends.items()}
