"""Values stored on the aiohttp application."""

from __future__ import annotations

from aiohttp import web

from dispatcher.service import Dispatcher
from dispatcher.settings import Settings

DISPATCHER = web.AppKey("dispatcher", Dispatcher)
SETTINGS = web.AppKey("settings", Settings)
