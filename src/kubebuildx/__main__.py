from kubebuildx.cli import main

raise SystemExit(main())
