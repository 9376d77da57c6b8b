from alexgui.cli import main

raise SystemExit(main())
