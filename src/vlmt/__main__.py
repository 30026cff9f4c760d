from vlmt.cli import main

raise SystemExit(main())
