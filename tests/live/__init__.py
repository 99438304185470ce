"""Live tests: real Hermes dashboards behind a real nginx, on this machine's loopback addresses only.

The helpers, one job each (all but the WebSocket client are stdlib; pytest is only needed by the tests):

- ``venvs.py``: venvs with a released hermes-agent, built once under ``.cache/live-venvs``, restored
  to the release bytes before each use (:func:`~live.venvs.hermes_venv`, :func:`~live.venvs.fresh_web_server`).
- ``dashboard.py``: ``hermes dashboard`` from such a venv (:class:`~live.dashboard.Dashboard`).
- ``supervisor.py``: a dashboard under a restarting supervisor, for the Update button.
- ``nginx.py``: a throw-away nginx in front of it, connecting from 127.0.0.5 (:class:`~live.nginx.Nginx`).
- ``clients.py``: HTTP and WebSocket (the ``websockets`` library's client) from a chosen source address.
- ``browser.py``: Debian's chromium through playwright.
- ``processes.py``: loopback checks, free ports, polling with deadlines, process groups, file locks.

Nothing sleeps for a fixed time: readiness is polled with deadlines.
"""
