"""The lab: tools for tests, the demo and the simulated field, never run on a Pi in service.

- :mod:`agent.lab.sim`: a private dbus-daemon and a fake bluetoothd (the simulated air).
- :mod:`agent.lab.demo`: ``contact-agent demo`` and ``contact-agent simulate`` (the
  simulated field with its relay attackers).
- :mod:`agent.lab.keyserver`: the local test key server (verification, publish, exports).

Installed with the package, imported only by the CLI's lab commands (inside the command
functions), the tests and the scripts. Product modules never import this package; the
import contract test (``tests/unit/test_architecture.py``) keeps it so.
"""
