"""Item pipelines: clean each fetched page (``clean``), then store it (``store``)."""
