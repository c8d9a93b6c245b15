"""File I/O: micrographs, STAR and coordinate formats, safe atomic output."""
