"""Spiders of the pressarchive Scrapy project (one config-driven spider: ``releases``)."""
