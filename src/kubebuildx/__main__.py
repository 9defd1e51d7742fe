from kubebuildx.cli import entry

entry()
