"""Runs the emulator's gateway and simulation on a host and port."""

from __future__ import annotations

from types import TracebackType
from typing import Self

from aiohttp import web

from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.gateway import create_app
from service.emulator.sim import Simulation

# Long enough for in-flight requests (a latency fault included) to finish on a clean stop.
SHUTDOWN_TIMEOUT_S = 5.0


class EmulatorServer:
    """`async with EmulatorServer(config) as emu:` serves CCC on `emu.url` until the block ends.

    Port 0 binds a free port; `emu.port` is the bound one once started.
    """

    def __init__(self, config: EmulatorConfig, clock: SimClock | None = None) -> None:
        self.config = config
        self.clock = clock or SimClock(config.speed)
        self.sim = Simulation(config, self.clock)
        self.port = config.port
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        host = f"[{self.config.host}]" if ":" in self.config.host else self.config.host
        return f"http://{host}:{self.port}"

    async def start(self) -> None:
        """Bind and serve; raises OSError (e.g. the port is in use) with nothing left running."""
        # handler_cancellation stays off: a request whose client went away still executes,
        # which is how a timeout after sending behaves in the real service.
        runner = web.AppRunner(
            create_app(self.config, self.sim, self.clock),
            access_log=None,
            handler_cancellation=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self.config.host, self.config.port).start()
        except BaseException:
            await self.stop()
            raise
        self.port = runner.addresses[0][1]

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
