from coursesite.build import main

raise SystemExit(main())
