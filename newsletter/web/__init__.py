"""The web app: thin routes over the same service functions the CLI uses."""
