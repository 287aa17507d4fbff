"""The site runtime: what a hospital runs next to its data (SiteWorker, statistics, files)."""
