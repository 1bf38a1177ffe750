"""`python -m voxseg` is the `voxseg` command."""

from voxseg.cli import main

raise SystemExit(main())
