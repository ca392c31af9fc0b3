"""Command line for the analysis toolkit: `python -m jaxbgs.analysis --help`."""
