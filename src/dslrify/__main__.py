"""``python -m dslrify``: the same as the ``dslrify`` command."""

from dslrify.cli import app

if __name__ == "__main__":
    app(prog_name="dslrify")
