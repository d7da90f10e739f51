"""moto's server, bound to 127.0.0.1, handling one request at a time.

moto's backends check a write's condition and then write without a lock, so
two concurrent conditional puts of one key can both succeed under load;
DynamoDB never lets them. Connections are still served on threads, but each
request runs under one lock, which gives the tests DynamoDB's atomic
conditional writes. Usage: python infra/moto_server.py PORT
"""
import os
import sys
import threading

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import run_simple

port = int(sys.argv[1])
os.environ.setdefault("MOTO_PORT", str(port))
moto_app = DomainDispatcherApplication(create_backend_app)
lock = threading.Lock()


def atomic(environ, start_response):
    with lock:
        # Drain the body inside the lock: the request is done when it is sent.
        return list(moto_app(environ, start_response))


run_simple("127.0.0.1", port, atomic, threaded=True, request_handler=MotoRequestHandler)
