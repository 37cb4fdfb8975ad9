from linebox.cli import main

raise SystemExit(main())
