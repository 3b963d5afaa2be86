"""The long-running agent: supervisor, control socket, notifications, metrics, sd_notify."""
