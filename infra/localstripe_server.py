"""Start localstripe bound to 127.0.0.1 only (its own CLI listens on every
interface). Usage: python infra/localstripe_server.py PORT"""
import sys

import aiohttp.web
import localstripe.server

aiohttp.web.run_app(
    localstripe.server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None
)
