"""Using what was trained: the kept model (``model``), export (``export``), binary indexes
and top-k search (``index``, ``search``)."""
