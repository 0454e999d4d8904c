"""``python -m dnnexp ARGS`` runs the ``dnnexp`` command."""

from dnnexp.cli import main

if __name__ == "__main__":  # not when a worker process imports the main module again (multiprocessing, loky)
    main()
