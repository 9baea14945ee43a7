"""`python -m unmix_job`: the same as the `unmix-job` command."""

from .main import main

main()
