from recsim_cli.cli import main

raise SystemExit(main())
