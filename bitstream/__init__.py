"""The .cdt container format. Depends on numpy, zstandard and constriction only; never imports torch."""
