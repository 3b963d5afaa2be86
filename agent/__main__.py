"""``python -m agent`` is the same program as ``contact-agent``."""

from agent.cli import main

if __name__ == "__main__":
    main()
