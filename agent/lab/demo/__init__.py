"""The demo and the simulated field: the whole story on one machine, no Bluetooth needed.

- ``contact-agent demo`` (:mod:`.story` on :mod:`.world`): a private dbus-daemon, the fake
  bluetoothd, the local test key server and N real :class:`~agent.daemon.service.AgentService`
  daemons in one process, on an accelerated clock. A and B spend 20 simulated minutes
  1.5 m apart, C is far away behind walls; A reports a positive test through the real
  HTTP flow; B and C download and match the published keys; B must be notified and C not.
  :mod:`.observe` collects what each agent heard, :mod:`.report` writes the report.
- ``contact-agent simulate SCENARIO`` (:mod:`.simfield` on :mod:`.scenario`): many agents
  moving through rooms, simulated in process without D-Bus (path loss, per-frame
  reception, duty cycles) but with the agents' real key schedule, crypto, matching and
  risk scoring; precision and recall of close-contact detection against ground truth.
"""
