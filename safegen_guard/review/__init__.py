"""Where people meet SAFEGEN: evidence panels, HTML reports, the review app, reader studies."""
