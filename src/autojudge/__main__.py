from autojudge.cli import main

raise SystemExit(main())
