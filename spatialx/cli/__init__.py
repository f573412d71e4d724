"""The ``spatialx`` command line: a thin Typer layer over library functions."""
