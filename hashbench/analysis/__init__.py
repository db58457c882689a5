"""Analysis: tables, figures and the report page, derived from the results store alone."""
