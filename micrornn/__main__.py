"""`python -m micrornn ...` runs the same command line as `micrornn ...`."""
from micrornn.cli import main

raise SystemExit(main())
