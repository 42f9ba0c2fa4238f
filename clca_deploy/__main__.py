"""``python -m clca_deploy``: the ``clca-deploy`` command line, for a venv whose scripts are not on PATH."""

from clca_deploy.cli import main

if __name__ == "__main__":
    main()
