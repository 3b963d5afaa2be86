"""Field-test kit: ground-truth marks, a preflight check, and the two-device report.

- :mod:`agent.field.marks`: ``contact-agent mark`` lines (time, distance, note, wall).
- :mod:`agent.field.preflight` (verdicts) over :mod:`agent.field.probes` (facts).
- :mod:`agent.field.timeoffset`: the NTP-style clock-offset exchange between devices.
- :mod:`agent.field.report` and :mod:`agent.field.exposure`: pure analysis of two logs.
- :mod:`agent.field.render` (Markdown/HTML/JSON), :mod:`agent.field.plots` (PNG, optional
  matplotlib) and :mod:`agent.field.files` (reading inputs, writing the report).
"""
