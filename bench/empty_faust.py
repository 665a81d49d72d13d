"""The worker's Faust setup with an agent that does nothing but count: Faust's own cost."""

import tempfile
from pathlib import Path

import faust
from redis.asyncio import Redis

from stream_app.worker import create_app
from streamrec.contract import RedisKeys, Settings


def main() -> None:
    settings = Settings()
    with tempfile.TemporaryDirectory(prefix="streamrec-empty-faust-") as datadir:
        run(settings, create_app(settings, Path(datadir)))


def run(settings: Settings, app: faust.App) -> None:
    app.agents.clear()  # drop the real agents; keep the app's transport and group settings
    redis = Redis.from_url(settings.redis_url)
    counters = RedisKeys(settings.key_prefix).counters

    @app.agent(app.topic(settings.events_topic))
    async def count_only(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(settings.batch_max_events,
                                              within=settings.batch_within_seconds):
            await redis.hincrby(counters, "seen", len(batch))

    faust.Worker(app, loglevel="WARNING").execute_from_commandline()


if __name__ == "__main__":
    main()
