from canaryd.cli.main import main

raise SystemExit(main())
