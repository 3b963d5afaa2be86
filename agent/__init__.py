"""contact-agent: a Bluetooth LE Exposure Notification (GAEN) agent for Linux."""

__version__ = "0.1.0"
