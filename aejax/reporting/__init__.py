"""``aejax-report``'s parts: reading the runs (``runs``), the table (``table``), the figures
(``plots``); the command itself is ``aejax.report``."""
