"""``python -m dnnexp ARGS`` runs the ``dnnexp`` command."""

from dnnexp.server import command

if __name__ == "__main__":  # not when a worker process imports the main module again (multiprocessing, loky)
    command()
